"""beamflow.pruner: deletes a scan's files when its retention hold expires and a verified copy exists.

Not built yet: this package holds no service and registers no entry point, so nothing can start it.
"""

"""beamflow.archiver: bundles moved scans into tape archives and publishes ``scan.archived``.

Not built yet: this package holds no service and registers no entry point, so nothing can start it.
"""

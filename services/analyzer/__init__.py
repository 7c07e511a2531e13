"""beamflow.analyzer: runs a beamline's analysis on HPC and publishes ``scan.analyzed``.

Not built yet: this package holds no service and registers no entry point, so nothing can start it.
"""

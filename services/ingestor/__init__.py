"""beamflow.ingestor: registers scans in the SciCat catalog and publishes ``scan.ingested``.

Not built yet: this package holds no service and registers no entry point, so nothing can start it.
"""

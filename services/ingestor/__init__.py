"""beamflow.ingestor: registers scans in the SciCat catalog and publishes ``scan.ingested``.

``extractors`` read each beamline's files into metadata and a thumbnail; ``datasets`` builds the SciCat
dataset, datablock and attachment from them; ``catalog`` talks to SciCat; ``handler`` is the step.
"""

"""beamflow.archiver: bundles verified copies into tape archives and publishes ``scan.archived``.

The handler plans bundles (``planning``), writes them through an archive backend (local tar or NERSC HPSS), and
places the retention holds the archive now makes possible.
"""

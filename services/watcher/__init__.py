"""beamflow.watcher: notices finished scans in a detector folder and announces them as ``scan.new``.

Runs beside the detector. Finished files are noticed by inotify (``closed``/``moved``) or, on network mounts,
by polling with a stability rule; a reconcile pass at start and on an interval catches anything missed.
Files are grouped into scans by the beamline's rule. Every announcement goes to a local spool first and
leaves it only once JetStream has stored it, so a scan is never lost while the bus is down.
"""

"""beamflow.ledger: folds every event on the bus into one record per scan (the ``LEDGER`` KV bucket).

Consumes every ``scan.<stage>`` event, the dead letters, and the retention holds as they are placed and
as they expire. ``beamflow status`` and the pruner's safety rule read what it writes.
"""

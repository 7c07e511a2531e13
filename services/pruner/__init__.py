"""beamflow.pruner: deletes a scan from an endpoint when its retention hold expires, if that is safe.

Consumes ``hold.expired.<beamline>.<scan_id>.<endpoint>`` (published by the NATS server when a hold's
schedule fires). Deletes only when the four-part safety rule holds (``beamflow.common.safety``), then
publishes ``scan.pruned``; otherwise nothing is deleted and the hold is dead-lettered with the reason.
"""

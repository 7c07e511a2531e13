"""beamflow.mover: copies each new scan to the beamline's destinations, in order, and verifies every copy.

Consumes ``scan.new.<beamline>``; publishes one ``scan.moved.<beamline>`` per destination as soon as that
destination holds a verified copy. Destinations are tried in the order the beamline's configuration lists
them and each gates the next (8.3.2: spot832 -> data832 -> NERSC). Export-controlled scans are never sent
to an endpoint marked ``leaves_facility``.
"""

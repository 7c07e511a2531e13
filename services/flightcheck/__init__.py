"""beamflow.flightcheck: sends a small test scan through a beamline's whole pipeline on its real endpoints, on
a schedule (or on request), checks every verified copy arrived in time, removes the test files, and reports.
"""

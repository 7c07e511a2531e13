"""beamflow.analyzer: runs a beamline's analysis job on each verified scan and publishes ``scan.analyzed``.

``handler`` is the step (stage, run, bring back); ``jobs`` the controllers (local process, host Slurm,
NERSC); ``script`` the job script and its result line; ``registry`` the running jobs an operator can
cancel; ``analyses`` the example analyses a job runs; ``cli`` the ``beamflow job`` commands.
"""

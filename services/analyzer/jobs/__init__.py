"""Job controllers: run one analysis job script at a compute site and follow it to its end.

Three kinds with one shape (``JobController.run``): a local process, ``sbatch`` on the host's Slurm, and
NERSC's Slurm through the Superfacility API. ``controller_for`` picks one from a site's configuration.
"""

from __future__ import annotations

from beamflow.analyzer.jobs.model import JobController
from beamflow.common.compute_config import ComputeSiteConfig, LocalCompute, NerscCompute, SlurmCompute


def controller_for(site: ComputeSiteConfig) -> JobController:
    if isinstance(site, LocalCompute):
        from beamflow.analyzer.jobs.local import LocalJobs

        return LocalJobs(site)
    if isinstance(site, SlurmCompute):
        from beamflow.analyzer.jobs.slurm import SlurmJobs

        return SlurmJobs(site)
    if isinstance(site, NerscCompute):
        from beamflow.analyzer.jobs.nersc import NerscJobs

        return NerscJobs(site)
    raise TypeError(f"unknown compute site kind {site!r}")

"""Tests against the local NERSC stand-in (beamflow.sfapi_local): a real Slurm driven by the unmodified sfapi-client."""

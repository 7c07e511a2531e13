"""A local stand-in for NERSC: the Superfacility API endpoints sfapi-client uses, backed by a real single-node
Slurm, with htar and hsi stand-ins working on a local folder."""

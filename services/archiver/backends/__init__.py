"""Archive backends behind one interface: a local tar archive (the embedded default) and NERSC HPSS."""

"""A local stand-in of the Globus Auth and Transfer APIs beamflow calls (being built)."""

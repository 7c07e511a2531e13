"""Example analyses an analyzer job can run: SAXS azimuthal integration and a tomography preview.

Each analysis is a module runnable as a command, and that command line is the whole interface between the
analyzer and the analysis, so a site can put its own program in its place through configuration::

    python -m beamflow.analyzer.analyses.<name> --output DIR [options] INPUT...

* INPUT are the scan's staged files; files an analysis does not use (other suffixes) are skipped with a
  note on stderr.
* Every output is written into DIR (created if missing) under a temporary name and renamed into place, so
  a reader never sees a half-written file.
* On success the last line on stdout is one JSON object::

      {"analysis": "<name>", "outputs": ["relative/path", ...], "parameters": {...},
       "software": {"name": ..., "version": ...}}

  with the output paths relative to DIR. Warnings and errors go to stderr.
* Exit codes: 0 success, 2 bad usage, 3 an input that cannot be read or is invalid (stderr names the
  file and why), 1 anything else.

The analyses: `saxs_integrate` (7.3.3 SAXS/WAXS, an EDF image into I(q)) and `tomo_preview` (8.3.2
micro-tomography, projections into a multi-resolution, flat-field corrected preview stack). Each module
also exposes the Python function its command wraps (`saxs_integrate.integrate`, `tomo_preview.preview`).
"""

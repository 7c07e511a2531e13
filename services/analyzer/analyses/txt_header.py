"""The 7.3.3 companion ``.txt`` header, read just far enough to look up keys by name.

The header is one ``key: value`` or ``key = value`` per line, written by the beamline's Windows PC (CRLF,
sometimes Latin-1, lines without a delimiter, times of day with colons). The integration only looks up a
few known keys, so each line is split at its first ``:`` or ``=``; a line like ``Acquired at 12:30:01``
then yields an odd key that is simply never asked for. Keys are matched by `normalise_key`, so
``Sample-Detector Distance``, ``sample detector distance`` and ``SAMPLE_DETECTOR_DISTANCE`` are one key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from .errors import AnalysisInputError

# A header larger than this is not a header (a mislabelled image, a log); refuse it rather than read it.
MAX_TXT_BYTES: Final = 4 << 20
_NOT_ALNUM: Final = re.compile(r"[^0-9a-z]+")


def normalise_key(key: str) -> str:
    """``"Sample-Detector Distance"`` -> ``"sampledetectordistance"``: case, spaces and punctuation ignored."""
    return _NOT_ALNUM.sub("", key.lower())


def parse_txt_header(text: str) -> dict[str, str]:
    """Normalised key -> raw value text; the first occurrence of a repeated key wins."""
    entries: dict[str, str] = {}
    for line in text.splitlines():
        at = [i for i in (line.find(":"), line.find("=")) if i >= 0]
        if not at:
            continue
        key = normalise_key(line[: min(at)])
        if key and key not in entries:
            entries[key] = line[min(at) + 1 :].strip()
    return entries


def read_txt_header(path: Path) -> dict[str, str]:
    """Read and parse ``path``; `AnalysisInputError` when it cannot be read or is not a text header."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_TXT_BYTES + 1)
    except OSError as exc:
        raise AnalysisInputError(path, f"cannot read the header file: {exc.strerror or exc}") from exc
    if len(raw) > MAX_TXT_BYTES:
        raise AnalysisInputError(path, f"larger than {MAX_TXT_BYTES} bytes, so not a 7.3.3 text header")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # Old beamline PCs write Windows-1252/Latin-1 (degree and micro signs); latin-1 decodes any byte.
        text = raw.decode("latin-1")
    # Binary junk and stray control characters would end up inside values; keep only printable text.
    text = "".join(c for c in text if c.isprintable() or c in "\r\n\t")
    return parse_txt_header(text)

"""Metadata extractor for beamline 7.3.3 (SAXS/WAXS/GISAXS): a ``.txt`` header beside ``.edf`` images.

A 7.3.3 scan is the files of one stem in one folder: ``<stem>.txt``, written by the beamline control
software, and ``<stem>.edf``, the Pilatus image (several frames may share the EDF file; a scan may also
carry several EDF files). What the catalogue gets:

* scientific metadata: every entry of the ``.txt`` header (numbers as numbers, ``"1.0 s"`` as a value with
  a unit), the lines that are not entries, the EDF header(s), the image layout and the file list;
* people and groups: proposal, PI, owner and e-mail from header keys (`HeaderKeys`, searched in the
  ``.txt`` header, then the EDF header) combined with the operator's `ProposalMapping`; nothing is made up;
* the creation time from the EDF ``Date`` (or the ``.txt`` date and time), in the mapping's time zone when
  the header gives no offset;
* a thumbnail of the first frame of the first image (log scale, 25th..99.9th percentile).

Scans whose file names contain ``autoexpose`` or ``beamstop_test`` (configurable) are alignment shots:
the result carries ``skip_reason`` and the files are not read.

The ``.txt`` format is loose: one entry per line, key and value split by ``:`` or ``=``, but lines without
any delimiter occur, and so do values with colons of their own (a time of day ``12:30:01``). `parse_txt`
masks times of day, clock-like ratios and drive letters before looking for the delimiter, so
``Time: 12:30:01`` is the entry ``Time`` and ``Acquired at 12:30:01`` is kept as an unparsed line instead of
becoming the entry ``Acquired at 12``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from beamflow.common.edf import STRUCTURAL_KEYS, EdfError, EdfFile, read_edf

from .base import (
    Extracted,
    ProposalMapping,
    UnreadableScan,
    clean_email,
    clean_text,
    parse_datetime,
    parse_day,
    parse_time_of_day,
    resolve_ownership,
    search_terms,
)
from .thumbnails import thumbnail_png

TECHNIQUE: Final = "saxs-waxs-733"
TECHNIQUES: Final = ("SAXS/WAXS",)
KEYWORDS: Final = ("SAXS", "WAXS", "scattering", "ALS")
# A header file larger than this is not a header; read the start and say so.
MAX_TXT_BYTES: Final = 4 << 20
MAX_KEY_LENGTH: Final = 80

# Spans whose colons are part of a value, not a delimiter: times of day (12:30, 12:30:01.5), Windows drive
# letters (C:\ or C:/) and URL schemes (http://).
_MASKS: Final = re.compile(
    r"(?<![\w:])\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:\s*[AaPp][Mm])?(?![\w:])"
    r"|\b[A-Za-z]:[\\/]"
    r"|\b[A-Za-z][\w+.-]*://"
)
_NUMBER: Final = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_INT: Final = re.compile(r"[-+]?\d+")
_UNIT: Final = re.compile(r"[A-Za-z%\u00b0\u00b5\u212b][\w/%\u00b0\u00b5\u212b^*.-]{0,11}")


@dataclass
class TxtHeader:
    """A parsed ``.txt`` header: entries in file order, the lines that were not entries, and problems."""

    entries: dict[str, Any] = field(default_factory=dict)
    unparsed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def convert_value(text: str) -> Any:
    """``"12"`` -> 12, ``"1.5e3"`` -> 1500.0, ``"1.000 s"`` -> {"value": 1.0, "unit": "s"}; else the text."""
    text = text.strip()
    if _INT.fullmatch(text):
        # Leading zeros are identifiers (scan numbers, proposal ids), not quantities.
        if len(text.lstrip("+-")) > 1 and text.lstrip("+-").startswith("0"):
            return text
        return int(text)
    if _NUMBER.fullmatch(text):
        return float(text)
    number = _NUMBER.match(text)
    if number:
        rest = text[number.end() :].strip()
        if rest and _UNIT.fullmatch(rest):
            return {"value": convert_value(number.group()), "unit": rest}
    return text


def split_entry(line: str) -> tuple[str, str] | None:
    """(key, value) of one header line, or None when the line is not a ``key: value`` / ``key = value``."""
    masked = _MASKS.sub(lambda m: "#" * len(m.group()), line)
    positions = [i for i in (masked.find(":"), masked.find("=")) if i >= 0]
    if not positions:
        return None
    at = min(positions)
    key = line[:at].strip()
    if not key or len(key) > MAX_KEY_LENGTH or not any(c.isalnum() for c in key):
        return None
    return key, line[at + 1 :].strip()


def parse_txt(text: str) -> TxtHeader:
    """Parse a 7.3.3 ``.txt`` header; never raises on content, reports oddities in ``warnings``."""
    result = TxtHeader()
    control = 0
    repeated: list[str] = []
    for raw_line in text.splitlines():
        # Control characters come from binary junk or a stray editor; drop them, keep the readable rest.
        line = "".join(c for c in raw_line if c == "\t" or c.isprintable())
        control += len(raw_line) - len(line)
        line = line.strip()
        if not line:
            continue
        entry = split_entry(line)
        if entry is None:
            result.unparsed.append(line)
            continue
        key, value = entry
        converted = convert_value(value)
        if key in result.entries:
            # The same key twice (two detectors, a re-run step): keep every value, in order.
            previous = result.entries[key]
            result.entries[key] = [*previous, converted] if isinstance(previous, list) else [previous, converted]
            if key not in repeated:
                repeated.append(key)
        else:
            result.entries[key] = converted
    if control:
        result.warnings.append(f"{control} control or binary characters dropped")
    if repeated:
        result.warnings.append(f"keys repeated (all values kept, as lists): {repeated[:10]}")
    return result


def read_txt(path: Path) -> TxtHeader:
    """Read and parse one ``.txt`` header file; `UnreadableScan` if it cannot be read or is empty."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_TXT_BYTES + 1)
    except OSError as exc:
        raise UnreadableScan(path, f"cannot read the header file: {exc.strerror or exc}") from exc
    if not raw.strip():
        raise UnreadableScan(path, "the header file is empty")
    truncated = len(raw) > MAX_TXT_BYTES
    raw = raw[:MAX_TXT_BYTES]
    try:
        text = raw.decode("utf-8")
        decoded_as = None
    except UnicodeDecodeError:
        # Old beamline PCs write Windows-1252/Latin-1 (degree and micro signs); latin-1 decodes any byte.
        text = raw.decode("latin-1")
        decoded_as = "latin-1"
    header = parse_txt(text)
    header.warnings = [f"{path.name}: {w}" for w in header.warnings]
    if decoded_as:
        header.warnings.append(f"{path.name}: not UTF-8; read as {decoded_as}")
    if truncated:
        header.warnings.append(f"{path.name}: larger than {MAX_TXT_BYTES} bytes; only the start was read")
    if not header.entries:
        header.warnings.append(f"{path.name}: no 'key: value' or 'key = value' entries")
    return header


def _norm(key: str) -> str:
    return re.sub(r"[\s_\-.]+", "", key).lower()


def _lookup(names: list[str], sources: list[dict[str, Any]]) -> str | None:
    """The first non-empty value of any of ``names`` (loosely matched) in the sources, in order."""
    wanted = [_norm(n) for n in names]
    for source in sources:
        index = {_norm(k): v for k, v in reversed(list(source.items()))}
        for name in wanted:
            if name not in index:
                continue
            value = index[name]
            if isinstance(value, list):  # a repeated key: the first value is the one the header led with
                value = value[0] if value else None
            if isinstance(value, dict):  # a number with a unit is not a name; use the text as written
                value = f"{value.get('value')} {value.get('unit')}"
            text = clean_text(value) if value is not None else None
            if text is not None:
                return text
    return None


def _creation_time(sources: list[dict[str, Any]], mapping: ProposalMapping, warnings: list[str]) -> datetime | None:
    """The first full timestamp any header gives (EDF first: its Date has the time of day); else a day alone."""
    keys = mapping.header_keys
    zone = mapping.zone()
    unreadable: list[str] = []
    day_only: datetime | None = None
    for source in sources:
        raw = _lookup(keys.datetime, [source])
        if raw is None:
            continue
        moment = parse_datetime(raw, zone)
        if moment is not None:
            return moment
        day = parse_day(raw)
        if day is None:
            unreadable.append(raw)
            continue
        clock = _lookup(keys.time, [source])
        at = parse_time_of_day(clock) if clock else None
        if at is not None:
            return datetime.combine(day, at, tzinfo=zone)
        day_only = day_only or datetime.combine(day, datetime.min.time(), tzinfo=zone)
    if unreadable:
        warnings.append(f"header dates this extractor does not understand: {unreadable}")
    if day_only is not None:
        warnings.append(f"the headers give a day but no time of day; creation time is midnight of {day_only:%Y-%m-%d}")
        return day_only
    warnings.append("no usable date in the headers; creation time unset (use the file's modification time)")
    return None


def _skip_reason(paths: list[Path], mapping: ProposalMapping) -> str | None:
    for path in paths:
        name = path.name.lower()
        for pattern in mapping.skip_patterns:
            if pattern and pattern.lower() in name:
                return f"{path.name} is an alignment shot ({pattern!r} in the name); not catalogued"
    return None


def _edf_metadata(image: EdfFile) -> dict[str, Any]:
    return {key: convert_value(value) for key, value in image.header.items()}


def extract_733(files: list[Path], mapping: ProposalMapping | None = None) -> Extracted:
    """Catalogue fields for one 7.3.3 scan (its ``.txt`` and ``.edf`` files).

    Raises `UnreadableScan` when the scan has neither a header nor an image, or when one of its files is
    empty, truncated or not in its format. Everything else (missing keys, odd lines, a header without a
    proposal) gives a result with ``warnings``.
    """
    config = mapping or ProposalMapping()
    paths = sorted({Path(f) for f in files}, key=lambda p: (p.name, str(p)))
    if not paths:
        raise UnreadableScan("<scan>", "the scan has no files", "check the beamline's scan rule in the config")
    txts = [p for p in paths if p.suffix.lower() == ".txt"]
    edfs = [p for p in paths if p.suffix.lower() == ".edf"]
    others = [p for p in paths if p not in txts and p not in edfs]
    stem = (txts or edfs or paths)[0].stem
    folder = paths[0].parent.name
    description = " ".join(search_terms(folder, stem))

    skip = _skip_reason(paths, config)
    if skip is not None:
        return Extracted(
            dataset_name=stem,
            description=description,
            techniques=list(TECHNIQUES),
            data_format="EDF",
            skip_reason=skip,
            scientific_metadata={"files": [p.name for p in paths]},
        )
    if not txts and not edfs:
        raise UnreadableScan(
            paths[0],
            f"no .txt header or .edf image among the scan's files ({', '.join(p.name for p in paths)})",
            "check that the beamline's extractor is the right one for these files",
        )

    warnings: list[str] = []
    if others:
        warnings.append(f"files that are neither .txt nor .edf were listed but not read: {[p.name for p in others]}")
    headers = [read_txt(p) for p in txts]
    for header in headers:
        warnings.extend(header.warnings)
    if not txts:
        warnings.append("no .txt header beside the image; catalogue fields come from the EDF header only")
    if len(txts) > 1:
        warnings.append(f"{len(txts)} .txt headers; the first to name a field wins: {[p.name for p in txts]}")

    images: list[EdfFile] = []
    for index, path in enumerate(edfs):
        try:
            image = read_edf(path, read_data=index == 0)
        except EdfError as exc:
            raise UnreadableScan(exc.path, exc.reason, exc.remedy) from exc
        warnings.extend(image.warnings)
        images.append(image)
    if not edfs:
        warnings.append("no .edf image; no thumbnail")

    txt_entries: dict[str, Any] = {}
    unparsed: list[str] = []
    for header in headers:
        for key, value in header.entries.items():
            txt_entries.setdefault(key, value)
        unparsed.extend(header.unparsed)
    # Free keys of the images only: Dim_1 or Size are never a sample name or a proposal.
    edf_free = [{k: v for k, v in image.header.items() if k.lower() not in STRUCTURAL_KEYS} for image in images]
    sources: list[dict[str, Any]] = [txt_entries, *edf_free]
    keys = config.header_keys

    email_raw = _lookup(keys.owner_email, sources)
    email: str | None = None
    if email_raw is not None:
        email, problem = clean_email(email_raw)
        if problem:
            warnings.append(f"owner e-mail: {problem}")
    ownership = resolve_ownership(
        proposal=_lookup(keys.proposal, sources),
        pi=_lookup(keys.pi, sources),
        owner=_lookup(keys.owner, sources),
        owner_email=email,
        mapping=config,
        source="headers",
        warnings=warnings,
    )
    creation = _creation_time([*edf_free, txt_entries], config, warnings)
    instrument = _lookup(keys.instrument, sources) or config.instrument
    if instrument is None:
        warnings.append("no instrument in the headers and none configured in the proposal mapping")

    metadata: dict[str, Any] = {"files": [p.name for p in paths]}
    if txts:
        metadata["txt_header"] = txt_entries
        if unparsed:
            metadata["txt_unparsed_lines"] = unparsed
    if images:
        first = images[0]
        metadata["image"] = {"file": first.path.name, "dtype": first.dtype, "shape": first.shape}
        metadata["frames"] = sum(image.frames for image in images)
        if len(images) == 1:
            metadata["edf_header"] = _edf_metadata(first)
        else:
            # A list, not a dict by file name: dots in keys are path separators to SciCat's database.
            metadata["edf_headers"] = [{"file": image.path.name, **_edf_metadata(image)} for image in images]

    thumbnail: bytes | None = None
    if images and images[0].data is not None:
        try:
            thumbnail = thumbnail_png(images[0].data)
        except ValueError as exc:
            warnings.append(f"{images[0].path.name}: no thumbnail: {exc}")
    elif images:
        warnings.append(f"{images[0].path.name}: pixels not readable; no thumbnail")

    return Extracted(
        scientific_metadata=metadata,
        **ownership.model_dump(),
        sample=_lookup(keys.sample, sources),
        dataset_name=stem,
        description=description,
        keywords=[*KEYWORDS, *search_terms(stem)],
        creation_time=creation,
        instrument=instrument,
        techniques=list(TECHNIQUES),
        data_format="EDF",
        thumbnail_png=thumbnail,
        warnings=warnings,
    )

"""What every metadata extractor returns, what it is told, and how it fails.

An extractor turns one scan's files into the fields of a SciCat raw dataset (`Extracted`). It reads files
only; it never talks to SciCat and never invents an owner: people, proposal and groups come from the scan's
own metadata or from the operator's `ProposalMapping`, and a field that neither provides stays ``None`` with
a line in ``warnings`` so the ingestor (or an operator reading the dead letter) can decide what to do.

Two failures are exceptions rather than warnings:

* `UnreadableScan`: a file of the scan cannot be read at all (empty, truncated, not the format it claims).
  The ingestor dead-letters the scan with the message, which names the file, says why, and says what the
  operator can do about it.
* `UnknownTechnique`: the beamline's configuration names an extractor that does not exist.

The helpers at the end (`json_safe`, `clean_text`, `clean_email`, `search_terms`, `parse_datetime`) are
shared by the extractors so that every technique cleans strings and numbers the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, tzinfo
from enum import Enum
from pathlib import Path, PurePath
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

#: The clock beamline computers write header dates in when a header gives no UTC offset (the ALS is in
#: California). Only a default of `ProposalMapping.timezone`; a site elsewhere sets its own.
DEFAULT_TIMEZONE: Final = "America/Los_Angeles"

#: Scans whose file names contain one of these are alignment shots, not science: the 7.3.3 staff asked the
#: seed system not to catalogue them.
DEFAULT_SKIP_PATTERNS: Final = ("autoexpose", "beamstop_test")

# Values that beamline software writes for "not set". "na" is deliberately absent: it is sodium.
_MISSING_WORDS: Final = frozenset({"", "none", "null", "nan", "n/a", "unknown", "undefined"})
_EMAIL_RE: Final = re.compile(r"^[^@\s'\",;<>]+@[^@\s'\",;<>]+\.[A-Za-z0-9-]{2,}$")


class UnreadableScan(Exception):
    """A file of the scan cannot be read at all; the message names the file, the reason and a remedy."""

    def __init__(self, path: Path | str, reason: str, remedy: str | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        self.remedy = remedy or (
            "check that the copy is complete (compare its size and checksum with the source) and re-copy the "
            "scan, or replay the dead letter once the file is fixed"
        )
        super().__init__(f"{self.path}: {reason}; {self.remedy}")

    def __reduce__(self) -> tuple[type[UnreadableScan], tuple[str, str, str]]:
        # Rebuilt from its parts, so it survives pickling (process pools, multiprocessing queues).
        return (type(self), (self.path, self.reason, self.remedy))


class UnknownTechnique(Exception):
    """The configuration names a technique no extractor is registered for."""

    def __init__(self, technique: str, known: Iterable[str]) -> None:
        self.technique = technique
        self.known = sorted(known)
        super().__init__(
            f"no metadata extractor for technique {technique!r}; known techniques: {', '.join(self.known)}"
        )

    def __reduce__(self) -> tuple[type[UnknownTechnique], tuple[str, list[str]]]:
        return (type(self), (self.technique, self.known))


class ProposalEntry(BaseModel):
    """What the facility knows about one proposal; any field left unset is taken from the scan's headers."""

    model_config = ConfigDict(extra="forbid")

    pi: str | None = None
    owner: str | None = None
    owner_email: str | None = None
    #: SciCat group that owns the proposal's datasets; the proposal id itself when unset.
    owner_group: str | None = None
    access_groups: list[str] = Field(default_factory=list)


def _keys(*names: str) -> list[str]:
    return list(names)


class HeaderKeys(BaseModel):
    """Header keys to look for, in order of preference.

    Matching ignores case, spaces, underscores and dashes ("Sample Name" matches ``sample_name``), so one
    list covers the spellings beamline software has used over the years. The `.txt` header is searched
    first, then the EDF image header.
    """

    model_config = ConfigDict(extra="forbid")

    proposal: list[str] = Field(
        default_factory=lambda: _keys("Proposal", "Proposal ID", "Proposal Number", "ALS Proposal", "ESAF")
    )
    pi: list[str] = Field(default_factory=lambda: _keys("PI", "Principal Investigator", "PI Name"))
    owner: list[str] = Field(default_factory=lambda: _keys("Owner", "User", "Username", "Users", "Experimenter"))
    owner_email: list[str] = Field(
        default_factory=lambda: _keys("Email", "E-mail", "Owner Email", "User Email", "Contact Email")
    )
    sample: list[str] = Field(default_factory=lambda: _keys("Sample Name", "Sample", "SampleName", "Title"))
    instrument: list[str] = Field(default_factory=lambda: _keys("Instrument", "Beamline"))
    #: A full timestamp (ISO 8601, ``Mon Oct 20 17:05:23 2014`` ...); the EDF header's ``Date`` usually is one.
    datetime: list[str] = Field(default_factory=lambda: _keys("Date", "DateTime", "Timestamp", "Start Time"))
    #: A time of day that completes a date-only ``Date`` line.
    time: list[str] = Field(default_factory=lambda: _keys("Time", "Time of Day"))


class ProposalMapping(BaseModel):
    """Operator configuration for catalogue ownership (7.3.3, where the headers carry little of it).

    Resolution, for each of PI, owner and e-mail: the mapping's entry for the scan's proposal when it sets
    the field (explicit configuration beats free text typed at the beamline; a difference is reported as a
    warning), else the header, else nothing (a warning). The owner falls back to the PI. The owner group is
    the entry's ``owner_group``, else the proposal id. Access groups are ``access_groups`` plus the entry's.
    """

    model_config = ConfigDict(extra="forbid")

    proposals: dict[str, ProposalEntry] = Field(default_factory=dict)
    #: Proposal to file scans under when the header names none (e.g. the beamline's staff proposal).
    default_proposal: str | None = None
    #: Groups given read access to every dataset of the beamline (e.g. its staff).
    access_groups: list[str] = Field(default_factory=list)
    header_keys: HeaderKeys = Field(default_factory=HeaderKeys)
    #: Case-insensitive substrings of file names that mark a scan as not to be catalogued.
    skip_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_SKIP_PATTERNS))
    #: Instrument name when the header names none.
    instrument: str | None = None
    #: IANA zone of the clock that wrote header dates without a UTC offset.
    timezone: str = DEFAULT_TIMEZONE

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'Europe/Berlin')") from exc
        return value

    def zone(self) -> tzinfo:
        return ZoneInfo(self.timezone)


class Extracted(BaseModel):
    """The catalogue fields one extractor found for one scan.

    Every field the file could not provide is ``None`` (or empty) and explained in ``warnings``;
    ``scientific_metadata`` is JSON-safe (numpy values converted, NaN and infinity as ``null``, bytes decoded,
    dots in keys replaced because SciCat's database reads them as paths). A quantity with a unit in the file
    is ``{"value": ..., "unit": ...}``. ``skip_reason`` set means: do not catalogue this scan (an alignment
    shot); the other fields are then only what the file names gave.
    """

    # Bytes go over JSON as base64, so the model survives a round trip through NATS or a dead letter.
    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    scientific_metadata: dict[str, Any] = Field(default_factory=dict)
    principal_investigator: str | None = None
    owner: str | None = None
    owner_email: str | None = None
    proposal: str | None = None
    owner_group: str | None = None
    access_groups: list[str] = Field(default_factory=list)
    sample: str | None = None
    dataset_name: str
    description: str = ""
    keywords: list[str] = Field(default_factory=list)
    #: When the data were taken, from the file (header date, HDF5 start date or time stamps); None if absent.
    creation_time: datetime | None = None
    instrument: str | None = None
    techniques: list[str] = Field(default_factory=list)
    #: Format of the raw files, for SciCat's ``dataFormat`` (``EDF``, ``DX``).
    data_format: str | None = None
    thumbnail_png: bytes | None = None
    warnings: list[str] = Field(default_factory=list)
    skip_reason: str | None = None

    @field_validator("scientific_metadata", mode="before")
    @classmethod
    def _json_safe(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return json_safe(value)
        return value


# --------------------------------------------------------------------------------------------- helpers


def _safe_key(key: object) -> str:
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
    # MongoDB (SciCat's store) treats '.' as a path separator and '$' at the start as an operator.
    text = text.replace(".", "_").lstrip("$").strip()
    return text or "_"


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON types: numpy scalars and arrays, bytes, dates, paths and NaN made safe."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace").replace("\x00", "")
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, Mapping):
        return {_safe_key(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Enum):
        return json_safe(value.value)
    if isinstance(value, complex):
        return {"real": json_safe(value.real), "imag": json_safe(value.imag)}
    return str(value)


def decode_text(value: object) -> str:
    """Bytes (or numpy bytes/str) as text; undecodable bytes replaced, NULs dropped."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, np.generic):
        value = value.item()
    text = value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)
    return text.replace("\x00", "")


def clean_text(value: object) -> str | None:
    """A free-text catalogue field as people meant it, or None when it says "not set".

    Beamline software pastes Python reprs (``b'8.3.2'``), wraps values in quotes and leaves trailing commas
    (``" '8.3.2', "``), and writes ``NONE`` for an empty field; all of that is stripped here.
    """
    if value is None:
        return None
    text = decode_text(value).strip()
    if len(text) >= 3 and text[0] == "b" and text[1] in "'\"" and text[-1] == text[1]:
        text = text[2:-1]
    text = text.strip(" \t\r\n'\",;`")
    text = " ".join(text.split())
    return None if text.lower() in _MISSING_WORDS else text


def clean_email(value: object) -> tuple[str | None, str | None]:
    """(address, problem): the first valid e-mail address in ``value`` and what was wrong, if anything."""
    text = clean_text(value)
    if text is None:
        return None, "no e-mail address (the field is empty or says NONE)"
    candidates = [c.strip("'\"<>()[] ") for c in re.split(r"[,;\s]+", text)]
    candidates = [c.removeprefix("mailto:") for c in candidates if c]
    valid = [c for c in candidates if _EMAIL_RE.match(c)]
    if not valid:
        return None, f"{text!r} is not an e-mail address"
    if len(valid) > 1:
        return valid[0], f"several e-mail addresses in {text!r}; using the first"
    return valid[0], None


def search_terms(*names: str) -> list[str]:
    """Lower-case words of the names, for SciCat's description and keywords (``MSB_Book1`` -> msb, book1)."""
    terms: list[str] = []
    for name in names:
        for term in re.split(r"[^A-Za-z0-9]+", name):
            term = term.lower()
            if term and term not in terms:
                terms.append(term)
    return terms


def unique(items: Iterable[str | None]) -> list[str]:
    """Non-empty items in first-seen order, without repeats."""
    seen: list[str] = []
    for item in items:
        if item and item not in seen:
            seen.append(item)
    return seen


_DATE_FORMATS: Final = (
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%a %b %d %H:%M:%S %Y",  # ctime(), what ESRF-style EDF writers put in Date
    "%a %b %d %H:%M:%S.%f %Y",
    "%d-%b-%Y %H:%M:%S",
    "%d-%b-%Y %H:%M:%S.%f",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %I:%M %p",
    "%b %d %Y %H:%M:%S",
)
_DAY_FORMATS: Final = ("%Y-%m-%d", "%Y/%m/%d", "%m/%d/%Y", "%d-%b-%Y", "%b %d %Y", "%a %b %d %Y")
_TIME_FORMATS: Final = ("%H:%M:%S.%f", "%H:%M:%S", "%H:%M", "%I:%M:%S %p", "%I:%M %p")


def _aware(moment: datetime, zone: tzinfo) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def parse_datetime(text: str, zone: tzinfo) -> datetime | None:
    """A full timestamp in one of the forms beamline software writes; naive ones are in ``zone``."""
    text = " ".join(text.strip().split())
    if not text or parse_day(text) is not None:
        # A day alone is not a timestamp (fromisoformat would make it midnight); callers combine it with a time.
        return None
    try:
        return _aware(datetime.fromisoformat(text.replace("Z", "+00:00")), zone)
    except ValueError:
        pass
    moment = _strptime_any(text, _DATE_FORMATS)
    return _aware(moment, zone) if moment is not None else None


def _strptime_any(text: str, formats: Iterable[str]) -> datetime | None:
    """``text`` read with the first of ``formats`` that fits it, or None."""
    for fmt in formats:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def parse_day(text: str) -> date | None:
    moment = _strptime_any(" ".join(text.strip().split()), _DAY_FORMATS)
    return moment.date() if moment is not None else None


def parse_time_of_day(text: str) -> time | None:
    moment = _strptime_any(" ".join(text.strip().split()), _TIME_FORMATS)
    return moment.time() if moment is not None else None


def epoch_to_datetime(value: float) -> datetime | None:
    """Seconds (or milliseconds) since 1970 as an aware UTC datetime, if it is a plausible acquisition time."""
    if not math.isfinite(value):
        return None
    if value > 1e11:  # milliseconds: some control systems stamp in ms
        value /= 1000.0
    # 2000-01-01 .. 2100-01-01: anything else is a counter or an uninitialised field, not a date.
    if not 946_684_800 <= value <= 4_102_444_800:
        return None
    return datetime.fromtimestamp(value, tz=UTC)


class Ownership(BaseModel):
    """The people and groups of a dataset, as resolved by `resolve_ownership`."""

    principal_investigator: str | None = None
    owner: str | None = None
    owner_email: str | None = None
    proposal: str | None = None
    owner_group: str | None = None
    access_groups: list[str] = Field(default_factory=list)


def resolve_ownership(
    *,
    proposal: str | None,
    pi: str | None,
    owner: str | None,
    owner_email: str | None,
    mapping: ProposalMapping | None,
    source: str,
    warnings: list[str],
    extra_access_groups: Iterable[str] = (),
) -> Ownership:
    """Combine what the file says (``source`` names where it was looked for) with the operator's mapping.

    See `ProposalMapping` for the order. Nothing is invented: a field neither gives stays None, with a warning.
    """
    if proposal is None and mapping is not None and mapping.default_proposal:
        proposal = mapping.default_proposal
    entry: ProposalEntry | None = None
    if proposal is not None and mapping is not None:
        entry = mapping.proposals.get(proposal)
        if entry is None and mapping.proposals:
            warnings.append(f"proposal {proposal!r} is not in the proposal mapping; using the {source} only")

    def pick(label: str, found: str | None, configured: str | None) -> str | None:
        if configured and found and configured != found:
            warnings.append(
                f"{label}: the {source} says {found!r}, the proposal mapping says {configured!r}; using the mapping"
            )
        return configured or found

    pi = pick("PI", pi, entry.pi if entry else None)
    owner = pick("owner", owner, entry.owner if entry else None)
    owner_email = pick("owner e-mail", owner_email, entry.owner_email if entry else None)

    if proposal is None:
        warnings.append(
            f"no proposal: none in the {source} and no default_proposal in the proposal mapping; "
            "proposal and owner group are unset"
        )
    if pi is None:
        warnings.append(f"no principal investigator in the {source} or the proposal mapping")
    if owner is None:
        # Owner = PI is the catalogue's rule when nobody else is named.
        owner = pi
        if owner is None:
            warnings.append(f"no owner in the {source} or the proposal mapping")
    if owner_email is None:
        warnings.append(f"no owner e-mail in the {source} or the proposal mapping")

    owner_group = (entry.owner_group if entry else None) or proposal
    access = unique(
        [
            *(mapping.access_groups if mapping else []),
            *(entry.access_groups if entry else []),
            *extra_access_groups,
        ]
    )
    return Ownership(
        principal_investigator=pi,
        owner=owner,
        owner_email=owner_email,
        proposal=proposal,
        owner_group=owner_group,
        access_groups=access,
    )

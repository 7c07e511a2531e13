"""Scattering geometry of a 7.3.3 image: where it comes from (headers or options) and each pixel's q.

The model is a flat detector perpendicular to the beam (no tilt), as 7.3.3 transmission SAXS/WAXS is set
up. A pixel's scattering angle 2θ follows from its distance r to the beam centre on the detector and the
sample-detector distance d, tan 2θ = r / d, and its momentum transfer from the wavelength λ,
q = 4π sin(θ) / λ, in 1/Å. The beam centre is in pixel-index coordinates: the centre of column 0 is x = 0
and the centre of row 0 is y = 0, as the beamline (and `beamflow.common.simulate`) writes it.

Each quantity is taken from the first place that has it: a command-line override, then the image's EDF
header (ESRF keys, lengths in metres), then the companion ``.txt`` header (the beamline's keys, lengths
in millimetres, wavelength in Å, energy in eV). A value may carry a unit (``1234.5 mm``, ``12.4 keV``),
which is honoured; without one the key's usual unit applies. A quantity found nowhere is an input error
naming the keys that were looked for and the option that supplies it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from .errors import AnalysisInputError, AnalysisUsageError
from .txt_header import normalise_key

#: h c in keV Å: λ [Å] = HC_KEV_A / E [keV].
HC_KEV_A: Final = 12.398419843320026

Quantity = Literal["pixels", "length", "energy"]

# Metres per unit; the keys are lower case (a header's "Å" or "A" both become "å"/"a").
_LENGTH_M: Final[dict[str, float]] = {
    "m": 1.0,
    "cm": 1e-2,
    "mm": 1e-3,
    "um": 1e-6,
    "\u00b5m": 1e-6,  # micro sign
    "\u03bcm": 1e-6,  # Greek mu
    "micron": 1e-6,
    "microns": 1e-6,
    "nm": 1e-9,
    "a": 1e-10,
    "\u00e5": 1e-10,  # "Å", also what the Ångström sign U+212B lowers to
    "angstrom": 1e-10,
}
_ENERGY_KEV: Final[dict[str, float]] = {"ev": 1e-3, "kev": 1.0}
_PIXEL_UNITS: Final = frozenset({"", "px", "pix", "pixel", "pixels"})
# A bare energy below this is in keV: no SAXS/WAXS beam has less than 100 eV, no header writes 100 keV.
_BARE_ENERGY_KEV_BELOW: Final = 100.0
_QUANTITY: Final = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S*)\s*")


@dataclass(frozen=True)
class Geometry:
    """Everything needed to turn a pixel position into q."""

    beam_center_x_px: float
    beam_center_y_px: float
    distance_mm: float
    pixel_size_x_um: float
    pixel_size_y_um: float
    wavelength_A: float

    @property
    def energy_keV(self) -> float:
        return HC_KEV_A / self.wavelength_A

    def as_dict(self) -> dict[str, float]:
        """The geometry with units in the names, as written into outputs and the summary line."""
        return {**asdict(self), "energy_keV": self.energy_keV}


@dataclass(frozen=True)
class GeometryOverrides:
    """Values given on the command line; each one wins over every header."""

    beam_center_x_px: float | None = None
    beam_center_y_px: float | None = None
    distance_mm: float | None = None
    pixel_size_um: float | None = None
    wavelength_A: float | None = None
    energy_keV: float | None = None

    def __post_init__(self) -> None:
        if self.wavelength_A is not None and self.energy_keV is not None:
            raise AnalysisUsageError("give the wavelength or the energy, not both")
        for name, value in self.given().items():
            centre = name.startswith("beam_center")
            if not math.isfinite(value) or (not centre and value <= 0):
                raise AnalysisUsageError(f"{name} must be a finite number{'' if centre else ' above 0'}, got {value}")

    def given(self) -> dict[str, float]:
        return {name: value for name, value in asdict(self).items() if value is not None}


@dataclass(frozen=True)
class _Key:
    """One place a quantity may be found: a header, a key in it, and the unit of a bare number there."""

    header: Literal["edf", "txt"]
    name: str
    quantity: Quantity
    unit: str


@dataclass(frozen=True)
class _Field:
    label: str
    option: str
    keys: tuple[_Key, ...]


_FIELDS: Final[dict[str, _Field]] = {
    "beam_center_x_px": _Field(
        "beam centre x",
        "--center-x PIXELS",
        (_Key("edf", "Center_1", "pixels", "px"), _Key("txt", "Beam Center X", "pixels", "px")),
    ),
    "beam_center_y_px": _Field(
        "beam centre y",
        "--center-y PIXELS",
        (_Key("edf", "Center_2", "pixels", "px"), _Key("txt", "Beam Center Y", "pixels", "px")),
    ),
    "distance_mm": _Field(
        "sample-detector distance",
        "--distance MM",
        (_Key("edf", "SampleDistance", "length", "m"), _Key("txt", "Sample-Detector Distance", "length", "mm")),
    ),
    "pixel_size_x_um": _Field("pixel size x", "--pixel-size UM", (_Key("edf", "PSize_1", "length", "m"),)),
    "pixel_size_y_um": _Field("pixel size y", "--pixel-size UM", (_Key("edf", "PSize_2", "length", "m"),)),
    "wavelength_A": _Field(
        "wavelength",
        "--wavelength ANGSTROM or --energy KEV",
        (
            _Key("edf", "WaveLength", "length", "m"),
            _Key("txt", "Wavelength", "length", "a"),
            _Key("txt", "Energy", "energy", "ev"),
        ),
    ),
}
# The unit each field is kept in, in metres (lengths) or as pixels.
_FIELD_UNIT_M: Final[dict[str, float]] = {
    "distance_mm": 1e-3,
    "pixel_size_x_um": 1e-6,
    "pixel_size_y_um": 1e-6,
    "wavelength_A": 1e-10,
}


def _convert(key: _Key, raw: str, field: str, path: Path) -> float:
    """``raw`` (a number with an optional unit) in the unit ``field`` is kept in."""
    match = _QUANTITY.fullmatch(raw)
    if match is None:
        raise AnalysisInputError(
            path, f"{key.name} = {raw!r} is not a number", f"fix the header or pass {_FIELDS[field].option}"
        )
    value = float(match.group(1))
    unit = match.group(2).lower()
    if key.quantity == "pixels":
        if unit not in _PIXEL_UNITS:
            raise AnalysisInputError(path, f"{key.name} = {raw!r}: a beam centre must be in pixels")
        return value
    if key.quantity == "energy":
        if unit:
            if unit not in _ENERGY_KEV:
                raise AnalysisInputError(path, f"{key.name} = {raw!r}: unknown energy unit {unit!r} (use eV or keV)")
            kev = value * _ENERGY_KEV[unit]
        else:
            kev = value if value < _BARE_ENERGY_KEV_BELOW else value * _ENERGY_KEV[key.unit]
        if not kev > 0:
            raise AnalysisInputError(path, f"{key.name} = {raw!r}: the energy must be above 0")
        return HC_KEV_A / kev
    factor = _LENGTH_M.get(unit or key.unit)
    if factor is None:
        raise AnalysisInputError(path, f"{key.name} = {raw!r}: unknown length unit {unit!r}")
    return value * factor / _FIELD_UNIT_M[field]


def _check(field: str, value: float, where: str, path: Path) -> float:
    # Unit conversion leaves binary noise (172e-6 m -> 172.00000000000003 um); headers carry far fewer than
    # 12 significant digits, so rounding there only keeps the recorded geometry readable.
    value = float(f"{value:.12g}")
    positive = field != "beam_center_x_px" and field != "beam_center_y_px"
    if not math.isfinite(value) or (positive and value <= 0):
        need = "a finite number above 0" if positive else "a finite number"
        raise AnalysisInputError(path, f"{where} gives the {_FIELDS[field].label} as {value}, which must be {need}")
    return value


def resolve_geometry(
    image: Path,
    edf_header: Mapping[str, str],
    companion: tuple[Path, Mapping[str, str]] | None = None,
    overrides: GeometryOverrides | None = None,
) -> tuple[Geometry, dict[str, str]]:
    """The geometry of ``image`` and, for each quantity, where it was found (for the record).

    ``companion`` is the ``.txt`` header's path and its parsed entries (keys as `normalise_key` gives them).
    Raises `AnalysisInputError` naming the missing key (or the unreadable value) and the option to pass.
    """
    given = overrides or GeometryOverrides()
    edf = {normalise_key(k): v for k, v in edf_header.items()}
    txt_path, txt = companion if companion is not None else (None, {})
    wavelength = (
        (HC_KEV_A / given.energy_keV, "--energy")
        if given.energy_keV is not None
        else (given.wavelength_A, "--wavelength")
    )
    from_option: dict[str, tuple[float | None, str]] = {
        "beam_center_x_px": (given.beam_center_x_px, "--center-x"),
        "beam_center_y_px": (given.beam_center_y_px, "--center-y"),
        "distance_mm": (given.distance_mm, "--distance"),
        "pixel_size_x_um": (given.pixel_size_um, "--pixel-size"),
        "pixel_size_y_um": (given.pixel_size_um, "--pixel-size"),
        "wavelength_A": wavelength,
    }
    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    for field, spec in _FIELDS.items():
        option_value, option = from_option[field]
        if option_value is not None:
            values[field] = _check(field, option_value, f"option {option}", image)
            sources[field] = f"option {option}"
            continue
        for key in spec.keys:
            table, path = (edf, image) if key.header == "edf" else (txt, txt_path)
            raw = table.get(normalise_key(key.name))
            if raw is None or path is None:
                continue
            where = f"EDF header key {key.name}" if key.header == "edf" else f"companion .txt key '{key.name}'"
            values[field] = _check(field, _convert(key, raw, field, path), where, path)
            sources[field] = f"{where} ({path.name})"
            break
        else:
            looked = [f"EDF header key {k.name}" for k in spec.keys if k.header == "edf"]
            txt_keys = [f"'{k.name}'" for k in spec.keys if k.header == "txt"]
            if txt_keys:
                looked.append(
                    f"companion .txt key {' or '.join(txt_keys)}"
                    + ("" if txt_path is not None else " (no companion .txt found)")
                )
            raise AnalysisInputError(
                image, f"no {spec.label}: looked for {' and '.join(looked)}", f"pass {spec.option}"
            )
    return Geometry(**values), sources


def q_map(shape: tuple[int, int], geometry: Geometry) -> npt.NDArray[np.float64]:
    """q in 1/Å at the centre of every pixel of an image of ``shape`` (rows, columns)."""
    rows, cols = shape
    y_mm = (np.arange(rows, dtype=np.float64) - geometry.beam_center_y_px) * (geometry.pixel_size_y_um * 1e-3)
    x_mm = (np.arange(cols, dtype=np.float64) - geometry.beam_center_x_px) * (geometry.pixel_size_x_um * 1e-3)
    radius_mm = np.hypot(y_mm[:, None], x_mm[None, :])
    two_theta = np.arctan2(radius_mm, geometry.distance_mm)
    q: npt.NDArray[np.float64] = (4.0 * np.pi / geometry.wavelength_A) * np.sin(0.5 * two_theta)
    return q

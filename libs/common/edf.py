"""ESRF data format (EDF), the 7.3.3 detector's image format: a small reader and the matching writer.

An EDF file is one or more frames; each frame is an ASCII header ``{ key = value ; ... }`` padded with
spaces so that it ends (with ``}`` and a newline) on a multiple of 512 bytes, followed by the raw pixels.
The header says how to read them: ``Dim_1`` (columns, the fastest axis), ``Dim_2`` (rows), optionally
``Dim_3``, ``DataType`` (``UnsignedShort``, ``SignedInteger``, ``FloatValue``...), ``ByteOrder``
(``LowByteFirst`` or ``HighByteFirst``) and ``Size`` (bytes of pixels); any other key is free metadata.

One file format, one codec: the 7.3.3 extractor reads with `read_edf`, the detector simulator
(`beamflow.common.simulate`) writes with `encode_edf`. Only what cataloguing needs is implemented: every
frame's header is walked (to count frames and notice a truncated file) and the first frame's pixels are
read. Compressed frames are recognised and reported, not decoded. A file that cannot be read raises
`EdfError` (path, reason, optional remedy), which the extractor turns into its own ``UnreadableScan``.

Why not fabio: it is a large dependency with its own logging and format guessing for one small format;
the tests cross-check this reader against fabio instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

import numpy as np
import numpy.typing as npt

BLOCK: Final = 512
# A header longer than this is not a header: the file is something else (or the '}' was lost).
MAX_HEADER: Final = 1 << 20
# Frames walked per file; a 7.3.3 scan has a handful, and the walk only seeks.
MAX_FRAMES: Final = 100_000

#: EDF DataType names and the numpy types they mean (several spellings exist in the wild).
DATA_TYPES: Final[dict[str, str]] = {
    "SignedByte": "i1",
    "Signed8": "i1",
    "UnsignedByte": "u1",
    "Unsigned8": "u1",
    "SignedShort": "i2",
    "Signed16": "i2",
    "UnsignedShort": "u2",
    "Unsigned16": "u2",
    "UnsignedShortInteger": "u2",
    "SignedInteger": "i4",
    "Signed32": "i4",
    "UnsignedInteger": "u4",
    "Unsigned32": "u4",
    # EDF's "Long" is 32 bits, whatever C's long is on the reading machine.
    "SignedLong": "i4",
    "UnsignedLong": "u4",
    "Signed64": "i8",
    "Unsigned64": "u8",
    "FloatValue": "f4",
    "Float": "f4",
    "FloatIEEE32": "f4",
    "Float32": "f4",
    "DoubleValue": "f8",
    "Double": "f8",
    "DoubleIEEE64": "f8",
    "FloatIEEE64": "f8",
    "Float64": "f8",
}
_TYPE_BY_LOWER: Final = {name.lower(): code for name, code in DATA_TYPES.items()}
#: The name the writer uses for each numpy type.
EDF_NAMES: Final[dict[str, str]] = {
    "int8": "SignedByte",
    "uint8": "UnsignedByte",
    "int16": "SignedShort",
    "uint16": "UnsignedShort",
    "int32": "SignedInteger",
    "uint32": "UnsignedInteger",
    "int64": "Signed64",
    "uint64": "Unsigned64",
    "float32": "FloatValue",
    "float64": "DoubleValue",
}
# Keys that describe the binary layout rather than the experiment.
STRUCTURAL_KEYS: Final = frozenset(
    {
        "headerid",
        "image",
        "byteorder",
        "datatype",
        "dim_1",
        "dim_2",
        "dim_3",
        "size",
        "edf_binarysize",
        "edf_headersize",
        "edf_datablockid",
        "compression",
    }
)


class EdfError(Exception):
    """``path`` cannot be read as EDF: ``reason`` says why, ``remedy`` (if any) what to do about it."""

    def __init__(self, path: Path | str, reason: str, remedy: str | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        self.remedy = remedy
        super().__init__(f"{self.path}: {reason}")


@dataclass
class EdfFile:
    """What `read_edf` found: the first frame's header and pixels, and the frame count."""

    path: Path
    header: dict[str, str]
    frames: int
    data: npt.NDArray[np.generic] | None
    dtype: str | None
    shape: tuple[int, ...] | None
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Layout:
    dtype: np.dtype[np.generic] | None
    shape: tuple[int, ...]
    nbytes: int  # bytes of pixels stored after the header
    compressed: bool


def parse_header(text: str) -> tuple[dict[str, str], list[str]]:
    """Header text between the braces -> (keys in order, entries without '=' that were skipped)."""
    header: dict[str, str] = {}
    odd: list[str] = []
    for entry in text.split(";"):
        entry = entry.strip()
        if not entry:
            continue
        key, sep, value = entry.partition("=")
        key = key.strip()
        if not sep or not key:
            odd.append(entry)
            continue
        header[key] = value.strip()
    return header, odd


def _find(header: dict[str, str], name: str) -> str | None:
    # EDF keys are case-insensitive in practice (DIM_1, Dim_1); the first spelling present wins.
    wanted = name.lower()
    for key, value in header.items():
        if key.lower() == wanted:
            return value
    return None


def _int(header: dict[str, str], name: str) -> int | None:
    raw = _find(header, name)
    if raw is None:
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None


def _read_header(fh: BinaryIO, path: Path, offset: int, frame: int) -> tuple[str, int] | None:
    """(header text, bytes up to and including the closing newline) at ``offset``; None at a clean end."""
    fh.seek(offset)
    raw = b""
    while True:
        chunk = fh.read(BLOCK)
        if not chunk:
            break
        raw += chunk
        start = raw.find(b"{")
        if start < 0:
            if raw.strip():
                raise EdfError(path, f"not an EDF file: frame {frame} at byte {offset} does not start with '{{'")
            continue
        if raw[:start].strip():
            raise EdfError(path, f"not an EDF file: data before '{{' in frame {frame} at byte {offset}")
        end = raw.find(b"}", start)
        # The header ends at "}\n" (or "}\r\n"); a '}' at the very end of what was read needs one more block.
        if end >= 0 and end + 1 < len(raw):
            stop = end + 1
            if raw[stop : stop + 2] == b"\r\n":
                stop += 2
            elif raw[stop : stop + 1] == b"\n":
                stop += 1
            text = raw[start + 1 : end].decode("latin-1")
            return text, stop
        if len(raw) > MAX_HEADER:
            raise EdfError(path, f"frame {frame}: no end of header '}}' within {MAX_HEADER} bytes")
    if raw.strip() == b"":
        return None
    if frame == 0:
        raise EdfError(path, "truncated EDF file: the header never ends (no closing '}')")
    raise EdfError(path, f"truncated EDF file: frame {frame} header at byte {offset} never ends")


def _layout(header: dict[str, str], path: Path, frame: int, warnings: list[str]) -> _Layout:
    dim1, dim2, dim3 = _int(header, "Dim_1"), _int(header, "Dim_2"), _int(header, "Dim_3")
    if dim1 is None or dim1 < 1:
        raise EdfError(path, f"frame {frame}: EDF header has no valid Dim_1 (got {_find(header, 'Dim_1')!r})")
    shape: tuple[int, ...] = (dim1,) if dim2 is None else (dim2, dim1)
    if dim3 is not None and dim3 > 1:
        shape = (dim3, *shape)
    if dim2 is None:
        warnings.append(f"{path.name}: frame {frame} has no Dim_2; read as one row")

    type_name = _find(header, "DataType")
    if type_name is None:
        warnings.append(f"{path.name}: no DataType in the EDF header; assuming UnsignedShort")
        type_name = "UnsignedShort"
    code = _TYPE_BY_LOWER.get(type_name.lower())
    declared = _int(header, "EDF_BinarySize")
    if declared is None:
        declared = _int(header, "Size")
    compression = (_find(header, "Compression") or "none").strip().lower()
    compressed = not (compression in ("", "none") or compression.startswith("no"))

    if code is None:
        if declared is None:
            raise EdfError(
                path,
                f"unknown EDF DataType {type_name!r} and no Size: the pixels cannot be located",
                "convert the image with the detector software, or add the type to beamflow's EDF reader",
            )
        warnings.append(f"{path.name}: unknown EDF DataType {type_name!r}; no thumbnail")
        return _Layout(None, shape, declared, compressed)

    byte_order = (_find(header, "ByteOrder") or "").strip().lower()
    if byte_order == "highbytefirst":
        order = ">"
    else:
        if byte_order != "lowbytefirst" and int(code[1:]) > 1:
            warnings.append(f"{path.name}: ByteOrder {byte_order or 'missing'!r}; assuming LowByteFirst")
        order = "<"
    dtype: np.dtype[np.generic] = np.dtype(order + code)
    expected = math.prod(shape) * dtype.itemsize
    if compressed:
        if declared is None:
            raise EdfError(path, f"frame {frame} is compressed ({compression}) and has no Size")
        warnings.append(f"{path.name}: frame {frame} is compressed ({compression}); not decoded, no thumbnail")
        return _Layout(None, shape, declared, True)
    if declared is not None and declared != expected:
        warnings.append(
            f"{path.name}: frame {frame} header says Size = {declared} but {shape} {type_name} is {expected} "
            "bytes; using the dimensions"
        )
    return _Layout(dtype, shape, expected, False)


def read_edf(path: Path, *, read_data: bool = True) -> EdfFile:
    """Walk the frames of ``path``; return the first frame's header and (with ``read_data``) its pixels.

    Raises `EdfError` if the file is empty, is not EDF, or ends before a frame's pixels do.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        fh = path.open("rb")
    except OSError as exc:
        raise EdfError(path, f"cannot open the EDF image: {exc.strerror or exc}") from exc
    if size == 0:
        fh.close()
        raise EdfError(path, "the EDF image is empty (0 bytes)")
    warnings: list[str] = []
    first: dict[str, str] | None = None
    first_layout: _Layout | None = None
    data: npt.NDArray[np.generic] | None = None
    frames = 0
    offset = 0
    with fh:
        while offset < size and frames < MAX_FRAMES:
            found = _read_header(fh, path, offset, frames)
            if found is None:
                break
            text, header_len = found
            header, odd = parse_header(text)
            if odd and frames == 0:
                warnings.append(f"{path.name}: skipped header entries without '=': {odd[:5]}")
            layout = _layout(header, path, frames, warnings)
            data_start = offset + header_len
            if data_start + layout.nbytes > size:
                raise EdfError(
                    path,
                    f"truncated EDF file: frame {frames} needs {layout.nbytes} bytes of pixels from byte "
                    f"{data_start}, but the file ends after {size - data_start}",
                )
            if frames == 0:
                first, first_layout = header, layout
                if header_len % BLOCK:
                    warnings.append(f"{path.name}: header is {header_len} bytes, not a multiple of {BLOCK}")
                if read_data and layout.dtype is not None:
                    fh.seek(data_start)
                    buffer = fh.read(layout.nbytes)
                    data = np.frombuffer(buffer, dtype=layout.dtype).reshape(layout.shape)
            frames += 1
            offset = data_start + layout.nbytes
    if first is None or first_layout is None:
        raise EdfError(path, "no EDF frame in the file (only whitespace)")
    if data is not None and data.dtype.byteorder == ">":
        # Native order for everything downstream (thumbnails, statistics).
        data = data.astype(data.dtype.newbyteorder("="))
    dtype_name = str(first_layout.dtype.newbyteorder("=")) if first_layout.dtype is not None else None
    return EdfFile(path, first, frames, data, dtype_name, first_layout.shape, warnings)


def encode_edf(
    frames: Sequence[npt.NDArray[np.generic]],
    header: Mapping[str, str] | None = None,
    *,
    byte_order: str = "LowByteFirst",
    pad: bool = True,
) -> bytes:
    """EDF bytes for ``frames`` (2-D arrays): one header block per frame, padded to 512 unless ``pad`` is off.

    ``header`` holds the free keys; the structural ones (HeaderID, Image, ByteOrder, DataType, Dim_1,
    Dim_2, Size) are written first and win over entries of the same name.
    """
    if byte_order not in ("LowByteFirst", "HighByteFirst"):
        raise ValueError(f"byte_order must be LowByteFirst or HighByteFirst, got {byte_order!r}")
    order = "<" if byte_order == "LowByteFirst" else ">"
    out = bytearray()
    for number, frame in enumerate(frames, start=1):
        arr = np.asarray(frame)
        if arr.ndim != 2:
            raise ValueError(f"EDF frames are 2-D, frame {number} has shape {arr.shape}")
        name = EDF_NAMES.get(str(arr.dtype.newbyteorder("=")))
        if name is None:
            raise ValueError(f"no EDF DataType for numpy dtype {arr.dtype}")
        rows, cols = arr.shape
        keys = {
            "HeaderID": f"EH:{number:06d}:000000:000000",
            "Image": str(number),
            "ByteOrder": byte_order,
            "DataType": name,
            "Dim_1": str(cols),  # EDF counts dimensions fastest first: Dim_1 is the column count
            "Dim_2": str(rows),
            "Size": str(arr.nbytes),
        }
        structural = {k.lower() for k in keys}
        for key, value in (header or {}).items():
            if key.lower() not in structural:
                keys[key] = value
        body = "{\n" + "".join(f"{key} = {value} ;\n" for key, value in keys.items())
        closing = "}\n"
        length = len(body.encode("latin-1")) + len(closing)
        padding = (math.ceil(length / BLOCK) * BLOCK - length) if pad else 0
        out += (body + " " * padding + closing).encode("latin-1")
        out += arr.astype(arr.dtype.newbyteorder(order)).tobytes()
    return bytes(out)

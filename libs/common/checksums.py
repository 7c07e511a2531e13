"""File checksums. One fast algorithm, named beside every digest so a later change of algorithm is safe.

xxh3-128 runs at memory speed (~26 GiB/s here, against ~1.6 GiB/s for sha256), so checksumming in the same
pass as the copy costs nothing measurable. It detects corruption, not tampering, which is what a copy check
needs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final, Protocol

import xxhash

ALGORITHM: Final = "xxh3-128"
#: 1 MiB keeps a chunk in the CPU cache between the read, the hash and the write (measured faster than 4 MiB).
CHUNK_SIZE: Final = 1024 * 1024


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


def new_hasher(algorithm: str = ALGORITHM) -> Hasher:
    if algorithm != ALGORITHM:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}; this build knows {ALGORITHM}")
    hasher: Hasher = xxhash.xxh3_128()
    return hasher


def file_checksum(path: Path, algorithm: str = ALGORITHM) -> tuple[str, int]:
    """The digest and the number of bytes read."""
    hasher = new_hasher(algorithm)
    total = 0
    with path.open("rb", buffering=0) as handle:
        # A small file gets a buffer of its own size: zeroing a whole chunk for 1 KiB was most of the cost
        # of checking small files. The loop still reads to the end if the file has grown.
        size = os.fstat(handle.fileno()).st_size
        buffer = bytearray(max(1, min(CHUNK_SIZE, size)))
        view = memoryview(buffer)
        while n := handle.readinto(buffer):
            hasher.update(view[:n])
            total += n
    return hasher.hexdigest(), total

"""Flat/dark-field correction of projections: (projection - dark) / (flat - dark), safely.

The dark is the mean of the dark frames (detector offset), the flat the mean of the flat (white) frames
(the beam without sample). Pixels where the flat does not exceed the dark by at least ``min_difference``
saw no beam (dead pixels, outside the beam): dividing there would blow noise up to any size, so they are
set to 0. Results below 0 (noise on a dark-subtracted pixel) are clipped to 0, so a later -log() is safe.
Without flats, projections are only dark-subtracted (and clipped); without darks the dark is 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Frame = npt.NDArray[np.float32]
#: Reads frames [start, stop) of a stack into the first stop - start entries of the given float32 buffer.
FrameReader = Callable[[int, int, npt.NDArray[np.float32]], None]


def frame_mean(read: FrameReader, count: int, shape: tuple[int, int], chunk: int) -> Frame:
    """Mean of ``count`` frames of ``shape``, read ``chunk`` at a time (a float64 sum, returned as float32)."""
    if count < 1:
        raise ValueError("the mean of no frames")
    total = np.zeros(shape, dtype=np.float64)
    buffer = np.empty((min(chunk, count), *shape), dtype=np.float32)
    for start in range(0, count, buffer.shape[0]):
        stop = min(start + buffer.shape[0], count)
        read(start, stop, buffer)
        total += buffer[: stop - start].sum(axis=0, dtype=np.float64)
    return (total / count).astype(np.float32)


@dataclass
class FlatField:
    """The correction, precomputed per pixel: ``out = max((raw - offset) / divisor, 0)``."""

    offset: Frame | None
    divisor: Frame | None

    @classmethod
    def from_frames(cls, dark: Frame | None, flat: Frame | None, min_difference: float = 1.0) -> FlatField:
        if flat is None:
            return cls(dark, None)
        difference = flat - dark if dark is not None else flat.copy()
        # Dividing by infinity gives the 0 wanted where the flat is unusable, without a separate pass.
        difference[~(difference >= min_difference)] = np.inf
        return cls(dark, difference)

    @property
    def kind(self) -> str:
        """What is done: "flat-dark", "flat", "dark" or "none" (the value of the outputs' ``correction``)."""
        if self.divisor is not None:
            return "flat-dark" if self.offset is not None else "flat"
        return "dark" if self.offset is not None else "none"

    def apply(self, stack: npt.NDArray[np.float32]) -> None:
        """Correct ``stack`` (n, rows, cols) in place."""
        if self.offset is not None:
            stack -= self.offset
        if self.divisor is not None:
            stack /= self.divisor
        if self.offset is not None or self.divisor is not None:
            np.maximum(stack, np.float32(0.0), out=stack)

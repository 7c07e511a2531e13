"""Mean binning of image stacks (angles x rows x columns), the building block of the tomography preview.

All functions work in float32 on whole projections, so a stack can be processed a chunk of projections at
a time: `bin_pixels` treats every projection alone, and `AnglePairer` carries an unpaired projection from
one chunk to the next, so chunked binning gives exactly the numbers binning the whole stack at once would.
A trailing odd row, column or projection has no partner and is dropped, as binning software usually does.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Stack = npt.NDArray[np.float32]


def bin_pixels(stack: Stack) -> Stack:
    """2 x 2 mean of every projection of ``stack`` (n, rows, cols) -> (n, rows // 2, cols // 2), float32."""
    rows, cols = stack.shape[1:]
    r2, c2 = 2 * (rows // 2), 2 * (cols // 2)
    # Four strided views summed into one new array: no full-size temporary, whatever the parity.
    out = np.add(stack[:, 0:r2:2, 0:c2:2], stack[:, 1:r2:2, 0:c2:2], dtype=np.float32)
    out += stack[:, 0:r2:2, 1:c2:2]
    out += stack[:, 1:r2:2, 1:c2:2]
    out *= np.float32(0.25)
    return out


def bin_pairs(stack: Stack) -> Stack:
    """Mean of consecutive projection pairs (0+1, 2+3, ...) -> (n // 2, rows, cols), float32."""
    m = stack.shape[0] // 2
    out = np.add(stack[0 : 2 * m : 2], stack[1 : 2 * m : 2], dtype=np.float32)
    out *= np.float32(0.5)
    return out


def bin_angles(theta: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """The angles of `bin_pairs`'s output: the mean of each pair, the odd last angle dropped."""
    values = np.asarray(theta, dtype=np.float64)
    m = values.shape[0] // 2
    return 0.5 * (values[0 : 2 * m : 2] + values[1 : 2 * m : 2])


class AnglePairer:
    """`bin_pairs` over a stack that arrives in chunks: an odd projection waits for the next chunk's first."""

    def __init__(self) -> None:
        self._carry: Stack | None = None

    def push(self, chunk: Stack) -> Stack:
        """The pairs completed by ``chunk`` (possibly none), in order."""
        if chunk.shape[0] == 0:
            return chunk
        parts: list[Stack] = []
        if self._carry is not None:
            parts.append(bin_pairs(np.stack([self._carry, chunk[0]])))
            chunk = chunk[1:]
            self._carry = None
        parts.append(bin_pairs(chunk))
        if chunk.shape[0] % 2:
            self._carry = chunk[-1].copy()
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

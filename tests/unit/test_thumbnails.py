"""Catalogue thumbnails: PNGs that decode, fit the size bound, and show the sample despite hot pixels.

The contrast checks look at pixel statistics of the decoded PNG: a hot pixel must not turn the rest black
(percentile clipping), and the log scale must lift the faint parts that a linear scale leaves dark.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import numpy.typing as npt
import pytest
from beamflow.common.simulate import saxs_pattern
from beamflow.ingestor.extractors import data_uri, thumbnail_png
from PIL import Image


def decode(png: bytes) -> npt.NDArray[np.uint8]:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.mode == "L"
    return np.asarray(image)


def saxs(shape: tuple[int, int] = (256, 256)) -> npt.NDArray[np.uint16]:
    rng = np.random.default_rng(11)
    return rng.poisson(saxs_pattern(shape, rng)).astype(np.uint16)


@pytest.mark.parametrize(
    ("shape", "max_size", "expected"),
    [
        ((2048, 2048), 512, (512, 512)),
        ((2160, 2560), 512, (432, 512)),
        ((1679, 1475), 512, (419, 368)),  # Pilatus 2M: factor 4
        ((100, 50), 512, (100, 50)),  # never enlarged
        ((3, 5000), 512, (1, 500)),  # a side shorter than the factor is averaged whole
        ((300, 300), 64, (60, 60)),
    ],
)
def test_size_is_bounded_and_the_aspect_ratio_kept(
    shape: tuple[int, int], max_size: int, expected: tuple[int, int]
) -> None:
    image = np.random.default_rng(0).integers(0, 4000, size=shape, dtype=np.uint16)
    pixels = decode(thumbnail_png(image, max_size=max_size))
    assert pixels.shape == expected
    assert max(pixels.shape) <= max_size


def test_a_hot_pixel_does_not_make_the_rest_black() -> None:
    clean = saxs()
    hot = clean.copy()
    hot[5, 5] = hot[200, 30] = 65535  # hot pixels, brighter than any real signal

    pixels = decode(thumbnail_png(hot))

    # Clipping at the 25th and 99.9th percentile: about a quarter of the picture is black, almost none white,
    # and the rest spreads over the grey levels.
    assert 0.15 < np.mean(pixels == 0) < 0.35
    assert np.mean(pixels == 255) < 0.01
    assert np.percentile(pixels, 75) > 40 and pixels.mean() > 25
    assert len(np.unique(pixels)) > 100
    # The hot pixels change nothing but themselves.
    reference = decode(thumbnail_png(clean)).astype(int)
    elsewhere = np.ones(pixels.shape, dtype=bool)
    elsewhere[5, 5] = elsewhere[200, 30] = False
    assert np.abs(pixels.astype(int) - reference)[elsewhere].max() <= 1
    # What the clipping prevents: scaled to the hot pixel, the picture is black.
    naive = (hot.astype(np.float64) / hot.max() * 255).astype(np.uint8)
    assert np.percentile(naive, 75) == 0


def test_the_log_scale_lifts_faint_signal_above_a_linear_scale() -> None:
    image = saxs()
    log_pixels = decode(thumbnail_png(image, log_scale=True))
    linear_pixels = decode(thumbnail_png(image, log_scale=False))
    assert np.median(log_pixels) > np.median(linear_pixels) + 20


def test_percentiles_set_the_contrast_window() -> None:
    ramp = np.tile(np.arange(1, 1001, dtype=np.float64), (10, 1))
    pixels = decode(thumbnail_png(ramp, log_scale=False, percentiles=(0.0, 100.0)))
    assert pixels.min() == 0 and pixels.max() == 255
    assert np.all(np.diff(pixels[0].astype(int)) >= 0)  # monotonic
    clipped = decode(thumbnail_png(ramp, log_scale=False, percentiles=(50.0, 60.0)))
    assert np.mean(clipped == 0) == pytest.approx(0.5, abs=0.01)
    assert np.mean(clipped == 255) == pytest.approx(0.4, abs=0.01)


def test_block_averaging_is_exact_on_known_blocks() -> None:
    # Four 2x2 blocks with means 0, 1, 2, 3: a linear full-range thumbnail at half size shows 0, 85, 170, 255.
    image = np.kron(np.array([[0, 1], [2, 3]], dtype=np.float64), np.ones((2, 2)))
    pixels = decode(thumbnail_png(image, max_size=2, log_scale=False, percentiles=(0.0, 100.0)))
    np.testing.assert_array_equal(pixels, [[0, 85], [170, 255]])


@pytest.mark.parametrize(
    "image",
    [
        np.full((64, 64), 7, dtype=np.uint16),
        np.zeros((64, 64), dtype=np.float32),
        np.full((64, 64), np.nan),
        np.full((64, 64), -np.inf),
    ],
    ids=["constant", "zeros", "all-nan", "all-inf"],
)
def test_flat_or_empty_images_give_a_black_thumbnail(image: npt.NDArray[np.generic]) -> None:
    pixels = decode(thumbnail_png(image))
    assert pixels.shape == (64, 64)
    assert np.all(pixels == 0)


def test_nan_inf_and_negative_pixels_do_not_break_it() -> None:
    image = saxs().astype(np.float64) - 50.0  # dark-subtracted: many negative values
    image[:10] = np.nan
    image[20, 20] = np.inf
    image[30, 30] = -np.inf
    image[100:110] = -1.0  # Pilatus gap marker

    pixels = decode(thumbnail_png(image))

    assert pixels.shape == (256, 256)
    assert np.median(pixels) > 20  # still a picture
    assert len(np.unique(pixels)) > 50


@pytest.mark.parametrize("dtype", ["uint8", "int16", "int32", "uint32", "int64", "float32", "float64", "bool"])
def test_every_pixel_type_works(dtype: str) -> None:
    image = (saxs() % 200).astype(dtype)
    assert decode(thumbnail_png(image)).shape == (256, 256)


def test_a_stack_shows_its_first_image() -> None:
    first = saxs()
    stack = np.stack([first, np.zeros_like(first)])
    assert thumbnail_png(stack) == thumbnail_png(first)
    assert thumbnail_png(first[None, None]) == thumbnail_png(first)


@pytest.mark.parametrize(
    ("image", "kwargs", "message"),
    [
        (np.arange(10), {}, "2-D"),
        (np.zeros((0, 5)), {}, "2-D"),
        (np.array([["a", "b"]]), {}, "numeric"),
        (np.zeros((4, 4)), {"max_size": 0}, "max_size"),
        (np.zeros((4, 4)), {"percentiles": (50.0, 50.0)}, "percentiles"),
        (np.zeros((4, 4)), {"percentiles": (-1.0, 50.0)}, "percentiles"),
    ],
)
def test_non_images_are_refused(image: npt.NDArray[np.generic], kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        thumbnail_png(image, **kwargs)  # type: ignore[arg-type]


def test_data_uri_wraps_the_png_for_scicat() -> None:
    png = thumbnail_png(saxs((32, 32)))
    uri = data_uri(png)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == png

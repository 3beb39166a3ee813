"""The slice plot's pure functions: what the browser is sent for a slice."""

import numpy as np
import pytest

from dashapp.data import SliceImage, SliceStats
from dashapp.views.plot import decoded, image_data, normalise


def test_linear_normalisation_puts_the_limits_on_0_and_1():
    values = np.array([[0.5, 1.0, 1.5], [2.0, np.nan, 3.0]], dtype=np.float32)
    t = normalise(values, (1.0, 2.0))
    assert t.dtype == np.float32
    np.testing.assert_array_equal(t, [[-0.5, 0.0, 0.5], [1.0, np.nan, 2.0]])


def test_log_normalisation_works_in_decades_and_sends_non_positive_values_to_the_low_end():
    values = np.array([1.0, 10.0, 100.0, 0.0, -5.0, np.nan])
    t = normalise(values, (1.0, 100.0), "log")
    np.testing.assert_allclose(t[:3], [0.0, 0.5, 1.0])
    assert t[3] == t[4] == -np.inf
    assert np.isnan(t[5])


def test_wide_values_keep_float64_and_round_trip():
    values = np.array([2**40 + 1, 2**40 + 7, 2**41], dtype=np.float64)
    lo, hi = float(values.min()), float(values.max())
    t = normalise(values, (lo, hi))
    assert t.dtype == np.float64
    np.testing.assert_allclose(lo + t * (hi - lo), values, rtol=0, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float16])
def test_narrow_types_are_sent_as_float32(dtype):
    values = np.arange(12, dtype=dtype).reshape(3, 4)
    t = normalise(values, (0.0, 11.0))
    assert t.dtype == np.float32
    np.testing.assert_allclose(t, values.astype(np.float64) / 11.0, rtol=1e-6)


def test_equal_limits_do_not_divide_by_zero():
    t = normalise(np.full((2, 2), 3.0, dtype=np.float32), (3.0, 3.0))
    np.testing.assert_array_equal(t, 0)


def _slice(values):
    return SliceImage(
        values=values, x=(0.0, 1.0), y=(0.0, 1.0), rows=(0, 1), cols=(0, 1),
        step=1, downsampled=False, stats=SliceStats(),
    )  # fmt: skip


def _decode(values, limits, scale="linear"):
    """Encoded as :func:`image_data` does, decoded as the browser does."""
    data = image_data(_slice(values), limits, scale)
    return data, decoded(data)


@pytest.mark.parametrize("scale", ["linear", "log"])
def test_16_bit_frames_are_the_normalised_values_to_half_a_code_step(scale):
    """What the browser colours from a 16-bit frame is :func:`normalise`'s value to within half
    a code step, a step at most 1/4096 of the colour range; NaN, inf and -inf (and values <= 0
    on the log scale) keep their meaning."""
    rng = np.random.default_rng(0)
    values = rng.lognormal(0, 1, (300, 200)) if scale == "log" else rng.uniform(0, 8, (300, 200))
    values = values.astype("f4")
    values[0, :3] = [np.nan, np.inf, -np.inf]
    values[1, :2] = [0.0, -3.0]
    limits = (0.5, 4.0)
    data, got = _decode(values, limits, scale)
    assert data["image"][0].dtype == np.uint16
    want = normalise(values, limits, scale)
    finite = np.isfinite(want)
    step = data["qb"][0]
    assert 0 < step <= 1 / 4096
    assert np.abs(got[finite] - want[finite]).max() <= step / 2 + 1e-6
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.isposinf(got), np.isposinf(want))
    assert np.array_equal(np.isneginf(got), np.isneginf(want))


@pytest.mark.parametrize("dtype", ["uint8", "int16", "int32", "bool"])
def test_integer_slices_are_sent_exactly(dtype):
    rng = np.random.default_rng(1)
    values = rng.integers(0, 2 if dtype == "bool" else 120, (50, 60)).astype(dtype)
    data, _ = _decode(values, (0.0, 10.0))
    codes = data["image"][0].astype(np.int64)
    assert data["dt"][0] == 1
    assert np.array_equal(data["t0"][0] + codes - 1, values.astype(np.int64))


@pytest.mark.parametrize("span", [100, 200_000])
def test_wide_integers_keep_their_precision(span):
    """int32 values near 2e9 (float32 rounds them to multiples of 128): exact within 65,532
    values, else within half a code step."""
    rng = np.random.default_rng(2)
    values = (2_000_000_000 + rng.integers(0, span, (40, 40))).astype("int32")
    data, _ = _decode(values, (2e9, 2e9 + span))
    t = data["t0"][0] + (data["image"][0].astype(np.int64) - 1) * data["dt"][0]
    assert np.abs(t - values).max() <= (0 if span < 65532 else data["dt"][0] / 2 + 1e-6)


def test_a_slice_far_outside_its_colour_limits_goes_as_float32():
    """Outliers 10,000 colour ranges away would leave too few codes for the colours: float32."""
    values = np.linspace(0, 1, 100 * 100, dtype="f4").reshape(100, 100)
    values[0, 0] = 1e4
    data, got = _decode(values, (0.0, 1.0))
    assert data["image"][0].dtype == np.float32
    assert np.isnan(data["dt"][0])
    np.testing.assert_array_equal(got, normalise(values, (0.0, 1.0)))
    float64 = values.astype("f8")  # kept exact for the hover readout
    assert _decode(float64, (0.0, 2e4))[0]["image"][0].dtype == np.float64


def test_32_bit_frames_on_request():
    values = np.linspace(0, 1, 64, dtype="f4").reshape(8, 8)
    assert image_data(_slice(values), (0, 1), bits16=False)["image"][0].dtype == np.float32

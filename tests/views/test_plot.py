"""The slice plot's pure functions: what the browser is sent for a slice."""

import numpy as np
import pytest

from dashapp.views.plot import normalise


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

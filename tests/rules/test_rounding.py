"""GB/T 8170 rounding: half to even on the decimal reading, scalar and vectorised alike."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from rules.rounding import round_gbt8170, round_gbt8170_array


@pytest.mark.parametrize("value, digits, expected", [
    (34.5, 0, 34), (35.5, 0, 36), (34.51, 0, 35), (34.49, 0, 34),
    (0.85, 1, 0.8), (0.95, 1, 1.0), (0.8500000000000001, 1, 0.9), (2.675, 2, 2.68), (0.25, 1, 0.2),
])
def test_rounds_half_to_even_on_the_decimal_reading(value, digits, expected):
    assert round_gbt8170(value, digits) == expected
    assert round_gbt8170_array(np.array([value]), digits)[0] == expected


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=50), st.integers(0, 3))
def test_vectorised_rounding_equals_scalar_rounding(values, digits):
    got = round_gbt8170_array(np.array(values), digits)
    assert list(got) == [round_gbt8170(v, digits) for v in values]


@given(st.integers(0, 10**6), st.integers(1, 3))
def test_exact_decimal_ties_go_to_the_even_neighbour(k, digits):
    value = float(f"{k}.{'0' * (digits - 1)}5") if digits > 1 else float(f"{k}.5")
    assert round_gbt8170_array(np.array([value]), digits - 1)[0] == round_gbt8170(value, digits - 1)


def test_nan_stays_nan():
    assert np.isnan(round_gbt8170_array(np.array([np.nan]), 1)[0])

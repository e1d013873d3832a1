"""spark_round's float fast path gives what its decimal definition (HALF_UP on the shortest decimal form) gives."""

import math
import random
from decimal import Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance_assets.transforms.features import _spark_round_decimal, spark_round, spark_round_all

DIGITS = (0, 1, 2, 3, 4, 6)  # 2, 3, 4 and 6 are what the features and scores round to


def outcome(value, digits) -> tuple[str, str]:
    """Both roundings' results as text (-0.0 is not 0.0), or the error they raise (beyond the decimal context's 28 digits)."""
    out = []
    for f in (spark_round, _spark_round_decimal):
        try:
            out.append(repr(f(value, digits)))
        except ArithmeticError as e:
            out.append(type(e).__name__)
    return tuple(out)


def same(value, digits) -> bool:
    fast, definition = outcome(value, digits)
    return fast == definition


def test_ties_on_the_shortest_decimal_form_round_half_up_where_pythons_round_does_not():
    assert round(2.675, 2) == 2.67 and spark_round(2.675, 2) == 2.68  # the double is 2.67499999...
    assert round(0.125, 2) == 0.12 and spark_round(0.125, 2) == 0.13  # an exact tie: half-even vs half-up
    assert spark_round(-2.5, 0) == -3.0 and spark_round(-0.001, 2) == -0.0 and math.copysign(1, spark_round(-0.001, 2)) == -1
    assert spark_round(None, 2) is None and spark_round(float("nan"), 2) is None
    assert spark_round(5, 2) == 5.0 and isinstance(spark_round(5, 2), float)


def test_near_ties_and_their_neighbours_agree_with_the_decimal_definition():
    rng = random.Random(11)
    checked = 0
    for digits in DIGITS:
        for _ in range(4000):
            # a decimal tie at `digits` (k + 0.5 units), of every magnitude the features reach, and the doubles around it
            whole = rng.choice([rng.randrange(10), rng.randrange(10**4), rng.randrange(10**7), rng.randrange(10**9), rng.randrange(10**13)])
            units = Decimal(whole * 10 + 5).scaleb(-(digits + 1)) * rng.choice((1, -1))
            tie = float(units)
            for value in (tie, math.nextafter(tie, math.inf), math.nextafter(tie, -math.inf), tie * (1 + 1e-12), tie + 10.0 ** -(digits + 6)):
                assert same(value, digits), (value, digits, outcome(value, digits))
                checked += 1
    assert checked == len(DIGITS) * 4000 * 5


@settings(max_examples=3000, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(DIGITS))
def test_any_double_agrees_with_the_decimal_definition(value, digits):
    assert same(value, digits), outcome(value, digits)


@settings(max_examples=3000, deadline=None)
@given(st.decimals(min_value=-10**9, max_value=10**9, places=7, allow_nan=False, allow_infinity=False), st.sampled_from(DIGITS))
def test_short_decimals_agree_with_the_decimal_definition(value, digits):
    # doubles written with a few decimals, like amounts, distances and ratios: their shortest form is that writing
    x = float(value)
    assert same(x, digits), outcome(x, digits)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.floats(-1e12, 1e12), st.just(float("nan")), st.decimals(-10**6, 10**6, places=7, allow_nan=False).map(float)), max_size=40),
       st.sampled_from(DIGITS))
def test_rounding_an_array_at_once_gives_each_elements_spark_round(values, digits):
    """spark_round_all (the real-time lane's scores and contributions) is spark_round of every element, -0.0 included."""
    unit = 10.0**-digits
    ties = [math.floor(v / unit) * unit + unit / 2 if v == v and abs(v) < 1e9 else v for v in values]  # at or beside a tie
    for array in (values, ties):
        assert list(map(repr, spark_round_all(np.array(array, dtype=np.float64), digits))) == [repr(spark_round(v, digits)) for v in array]
    assert [repr(x) for x in spark_round_all(np.array([[0.1234565, -0.0000001], [2.675, float("nan")]]), 6)] == \
        [repr(spark_round(v, 6)) for v in (0.1234565, -0.0000001, 2.675, float("nan"))]

"""GB/T 8170 rounding ("四舍六入五成双") for concentrations.

GB/T 8170-2008 §3.2: a trailing exact 5 rounds to the even neighbour, a 5 followed by any non-zero
digit rounds up. It is applied to the *decimal* representation of a value, so 34.5 → 34,
35.5 → 36, 34.51 → 35. Working on ``repr`` of the float (the shortest string that round-trips)
avoids the binary-float surprise where 2.675 is stored as 2.67499999....
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np


def round_gbt8170(value: float, digits: int = 0) -> float:
    """Round ``value`` to ``digits`` decimals by GB/T 8170 (half to even on the decimal digits)."""
    if math.isnan(value) or math.isinf(value):
        return value
    quantum = Decimal(1).scaleb(-digits)
    return float(Decimal(repr(float(value))).quantize(quantum, rounding=ROUND_HALF_EVEN))


def round_gbt8170_array(values: np.ndarray, digits: int = 0) -> np.ndarray:
    """Vectorised GB/T 8170 rounding, equal to ``round_gbt8170`` element for element; NaN stays NaN.

    With k = floor(x·10^d), the answer is k or k+1 and the half-way point is the decimal
    (2k+1)/(2·10^d). Dividing two exactly representable integers gives the float nearest that
    decimal, which is exactly the float a reading of "k.5" (scaled) parses to; so ``x == tie`` is
    true exactly when the decimal reading of ``x`` is the tie, and then the even neighbour wins.
    A product x·10^d that rounds across an integer only moves k where x is far from the tie, so
    the comparison with the tie still picks the right side.
    """
    x = np.asarray(values, dtype=np.float64)
    scale = 10.0**digits
    k = np.floor(x * scale)
    tie = (2.0 * k + 1.0) / (2.0 * scale)
    up = np.where(x == tie, np.mod(k, 2.0) == 1.0, x > tie)
    return (k + up) / scale

"""Numbers read from untrusted JSON (a journal, a result, a lease record, a summary)."""

from __future__ import annotations

import math
from typing import Any


def finite(value: Any) -> float | None:
    """`value` as a finite float; None for NaN, infinities, ints beyond a float (JSON allows
    a 400-digit integer), booleans and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None

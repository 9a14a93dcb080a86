"""JSON from outside (frames, REST bodies, NOTIFY payloads, tokens): strict, bounded, one error type.

Python's json accepts NaN and Infinity, turns 1e999 into inf and recurses until it dies
on deep nesting; none of that is JSON to Supabase or to a browser, and re-sending it would
break every JavaScript client on the channel. Here each is a ValueError.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["loads"]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} does not fit in a double")
    return value


def loads(text: str | bytes) -> Any:
    """Parse JSON, or raise ValueError (which UnicodeDecodeError is) for anything that is not plain JSON."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None

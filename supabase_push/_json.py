"""JSON from outside (frames, REST bodies, NOTIFY payloads, tokens): strict, bounded, one error type.

Python's json accepts NaN and Infinity, turns 1e999 into inf and recurses until it dies
on deep nesting; none of that is JSON to Supabase or to a browser, and re-sending it would
break every JavaScript client on the channel. Here each is a ValueError.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import orjson

__all__ = ["loads", "loads_each"]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} does not fit in a double")
    return value


def _exact_float(text: str) -> float | Decimal:
    """A float where it holds the number exactly as written (13.50), else the Decimal of the text."""
    value = float(text)
    if repr(value) == text:  # the common case, and exact: repr is the shortest text that reads back as value
        return value
    return value if math.isfinite(value) and Decimal(repr(value)) == Decimal(text) else Decimal(text)


def _exact_int(text: str) -> int | Decimal:
    """An int, or a Decimal past Python's 4,300-digit limit for int(str) (Postgres numerics go further)."""
    return int(text) if len(text) <= 4000 else Decimal(text)


# Built once: json.loads with hooks builds a decoder (and its scanner) on every call, which was most of
# the cost of reading a page of rows.
# Integers go through int() in C; only a text holding one past int(str)'s digit limit (a plain ValueError,
# not a JSONDecodeError) is parsed again with _exact_int.
_EXACT = json.JSONDecoder(parse_constant=_no_constant, parse_float=_exact_float)
_EXACT_LONG = json.JSONDecoder(parse_constant=_no_constant, parse_float=_exact_float, parse_int=_exact_int)
_PLAIN = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)


# orjson parses in C, about four times faster than json with the hooks below, but it turns an integer past
# 64 bits into a float and rounds a number past a double's 15 digits. A text in which no number can be
# either goes to orjson: no run of 16 digits and dots (a number of 15 significant digits or fewer, and
# below 10**15, which a float holds exactly as written) and no digit before an exponent. Anything else,
# and anything orjson refuses (NaN, 1e999, nesting past 1,024), goes to the decoders below, which decide.
_DIGIT_RUNS = bytes(ord("d") if chr(byte) in "0123456789." else ord("e") if chr(byte) in "eE" else ord(" ")
                    for byte in range(256))
_LONG_RUN = b"d" * 16


def _plain_numbers(data: bytes, *, exponents: bool = True) -> bool:
    runs = data.translate(_DIGIT_RUNS)
    return _LONG_RUN not in runs and not (exponents and b"de" in runs)


def loads(text: str | bytes, *, exact_numbers: bool = False) -> Any:
    """Parse JSON, or raise ValueError (which UnicodeDecodeError is) for anything that is not plain JSON.

    ``exact_numbers``: for rows, where every numeric Postgres stores must arrive as it is: a
    number a float cannot hold exactly, or an integer too long for ``int(str)``, becomes a
    ``Decimal`` (its JSON output is its exact text), never a rounded float, ``inf`` or an error."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if _plain_numbers(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return _decode(text, exact_numbers)


def loads_each(texts: list[str]) -> list[Any]:
    """:func:`loads` with exact numbers of each text of a page of rows as jsonb writes them (``record::text``,
    ``to_jsonb(t)::text``), in one parse where it can: the texts as one array, checked once for numbers orjson
    would round. A page holding such a number, or anything orjson refuses, is parsed text by text, so only its
    own rows take the slow way. jsonb holds every number as a numeric and writes it in plain notation, never
    with an exponent (whatever the column's type: a double of 1e300 is written with its 301 digits), so only
    runs of digits are looked for: the search for an exponent was a tenth of a catch-up's Python time."""
    if not texts:
        return []
    data = b"".join((b"[", ",".join(texts).encode("utf-8", "surrogatepass"), b"]"))
    if _plain_numbers(data, exponents=False):
        try:
            values = orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
        else:
            if len(values) == len(texts):  # else a text held more than one value: each one's own parse says so
                return values  # type: ignore[no-any-return]
    return [loads(text, exact_numbers=True) for text in texts]


def _decode(text: str | bytes, exact_numbers: bool) -> Any:
    """:func:`loads` in Python: slower, and the judge of every text orjson may not parse."""
    try:
        if isinstance(text, bytes):
            text = text.decode(json.detect_encoding(text), "surrogatepass")
        if not exact_numbers:
            return _PLAIN.decode(text)
        try:
            return _EXACT.decode(text)
        except json.JSONDecodeError:
            raise
        except ValueError:
            return _EXACT_LONG.decode(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None

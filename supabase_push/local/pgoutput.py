"""The ``pgoutput`` logical decoding format (protocol version 1), decoded without I/O.

:class:`Decoder` turns the messages of a replication stream into committed
:class:`Transaction` objects; values stay in Postgres' text form, and :func:`to_json`
renders them the way Supabase's ``realtime.cast`` does (numbers as numbers, json nested,
timestamps ISO 8601), so that records can be encoded once and sent to many subscribers.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from .frames import RawJSON

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

UNCHANGED_TOAST = object()  # a value that did not change and was not sent


class DecodeError(ValueError):
    """A message that does not follow the pgoutput format."""


@dataclass(frozen=True, slots=True)
class TypeInfo:
    name: str  # pg_type.typname: int4, text, _int4 ...
    category: str  # pg_type.typcategory: N numeric, B boolean, A array, U user ...
    elem: int = 0  # element type of an array


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type_oid: int
    is_key: bool


@dataclass(frozen=True, slots=True)
class Relation:
    oid: int
    schema: str
    table: str
    replica_identity: str  # d default, f full, i index, n nothing
    columns: tuple[Column, ...]


Values = list[object]  # str text, None for NULL, or UNCHANGED_TOAST


@dataclass(slots=True)
class Change:
    relation: Relation
    op: str  # INSERT, UPDATE, DELETE
    new: Values | None
    old: Values | None  # identity columns only unless REPLICA IDENTITY FULL


@dataclass(slots=True)
class Transaction:
    xid: int
    final_lsn: int
    commit_time: datetime
    changes: list[Change] = field(default_factory=list)
    end_lsn: int = 0


class Decoder:
    """Feed it pgoutput messages in stream order; it returns each transaction at its commit."""

    def __init__(self) -> None:
        self.relations: dict[int, Relation] = {}
        self._current: Transaction | None = None

    @property
    def in_transaction(self) -> bool:
        """Between a Begin and its Commit."""
        return self._current is not None

    def feed(self, data: bytes) -> Transaction | None:
        kind = data[:1]
        if kind == b"B":
            final_lsn, ts, xid = struct.unpack_from("!QqI", data, 1)
            self._current = Transaction(xid, final_lsn, PG_EPOCH + timedelta(microseconds=ts))
        elif kind == b"C":
            _flags, _commit_lsn, end_lsn, _ts = struct.unpack_from("!BQQq", data, 1)
            done, self._current = self._current, None
            if done is not None:
                done.end_lsn = end_lsn
            return done
        elif kind == b"R":
            relation = _parse_relation(data)
            self.relations[relation.oid] = relation
        elif kind in (b"I", b"U", b"D"):
            change = self._parse_change(kind, data)
            if self._current is None:
                raise DecodeError("row change outside a transaction")
            self._current.changes.append(change)
        elif kind not in (b"O", b"Y", b"T", b"M"):
            raise DecodeError(f"unknown pgoutput message {kind!r}")
        # O origin, Y type, T truncate, M logical message: nothing to deliver
        return None

    def _parse_change(self, kind: bytes, data: bytes) -> Change:
        (rel_oid,) = struct.unpack_from("!I", data, 1)
        relation = self.relations.get(rel_oid)
        if relation is None:
            raise DecodeError(f"change for relation {rel_oid} before its Relation message")
        offset = 5
        old: Values | None = None
        new: Values | None = None
        tag = data[offset:offset + 1]
        if tag in (b"K", b"O"):
            old, offset = _parse_tuple(data, offset + 1)
            if tag == b"K":
                old = [v if c.is_key else UNCHANGED_TOAST for v, c in zip(old, relation.columns, strict=True)]
            tag = data[offset:offset + 1]
        if tag == b"N":
            new, offset = _parse_tuple(data, offset + 1)
        op = {b"I": "INSERT", b"U": "UPDATE", b"D": "DELETE"}[kind]
        return Change(relation, op, new, old)


def _cstring(data: bytes, offset: int) -> tuple[str, int]:
    end = data.index(b"\0", offset)
    return data[offset:end].decode(), end + 1


def _parse_relation(data: bytes) -> Relation:
    (oid,) = struct.unpack_from("!I", data, 1)
    schema, offset = _cstring(data, 5)
    table, offset = _cstring(data, offset)
    identity = chr(data[offset])
    (ncols,) = struct.unpack_from("!H", data, offset + 1)
    offset += 3
    columns = []
    for _ in range(ncols):
        flags = data[offset]
        name, offset = _cstring(data, offset + 1)
        type_oid, _typmod = struct.unpack_from("!Ii", data, offset)
        offset += 8
        columns.append(Column(name, type_oid, bool(flags & 1)))
    return Relation(oid, schema or "pg_catalog", table, identity, tuple(columns))


def _parse_tuple(data: bytes, offset: int) -> tuple[Values, int]:
    (ncols,) = struct.unpack_from("!H", data, offset)
    offset += 2
    values: Values = []
    for _ in range(ncols):
        kind = data[offset:offset + 1]
        offset += 1
        if kind == b"n":
            values.append(None)
        elif kind == b"u":
            values.append(UNCHANGED_TOAST)
        elif kind in (b"t", b"b"):
            (length,) = struct.unpack_from("!I", data, offset)
            offset += 4
            values.append(data[offset:offset + length].decode())
            offset += length
        else:
            raise DecodeError(f"unknown tuple value kind {kind!r}")
    return values, offset


# -- values -> JSON -------------------------------------------------------------------------

_NOT_JSON_NUMBERS = frozenset({"NaN", "Infinity", "-Infinity"})


def to_json(text: str, info: TypeInfo | None, types: dict[int, TypeInfo]) -> str:
    """JSON text for one value in Postgres' text output (``realtime.cast`` semantics)."""
    if info is None:
        return json.dumps(text)
    if info.category == "N" and text not in _NOT_JSON_NUMBERS and info.name != "money":
        return text
    if info.category == "B":
        return "true" if text == "t" else "false"
    if info.name in ("json", "jsonb"):
        return text
    if info.name in ("timestamptz", "timestamp"):
        return json.dumps(_iso_timestamp(text))
    if info.category == "A" and info.elem:
        elem = types.get(info.elem)
        items = parse_array(text)
        return _array_json(items, elem, types)
    return json.dumps(text)


def _iso_timestamp(text: str) -> str:
    if len(text) > 10 and text[10] == " ":
        text = f"{text[:10]}T{text[11:]}"
    # Postgres prints "+00" or "+05:30"; ISO 8601 (and to_jsonb) wants "+00:00"
    if len(text) >= 3 and text[-3] in "+-" and text[-2:].isdigit():
        text += ":00"
    return text


def _array_json(items: list[object], elem: TypeInfo | None, types: dict[int, TypeInfo]) -> str:
    parts = []
    for item in items:
        if item is None:
            parts.append("null")
        elif isinstance(item, list):
            parts.append(_array_json(item, elem, types))
        else:
            parts.append(to_json(str(item), elem, types))
    return "[" + ",".join(parts) + "]"


def parse_array(text: str) -> list[object]:
    """A Postgres array literal (``{1,2,NULL}``, ``{"a b","c\\"d"}``, nested) as nested lists."""
    if text.startswith("[") and "=" in text:  # explicit bounds: [0:1]={...}
        text = text[text.index("=") + 1:]
    items, end = _parse_array_at(text, 0)
    if end != len(text):
        raise DecodeError(f"trailing text after array literal: {text!r}")
    return items


def _parse_array_at(text: str, pos: int) -> tuple[list[object], int]:
    if text[pos] != "{":
        raise DecodeError(f"array literal expected at {pos}: {text!r}")
    pos += 1
    items: list[object] = []
    if text[pos] == "}":
        return items, pos + 1
    while True:
        if text[pos] == "{":
            sub, pos = _parse_array_at(text, pos)
            items.append(sub)
        elif text[pos] == '"':
            pos += 1
            buf = []
            while text[pos] != '"':
                if text[pos] == "\\":
                    pos += 1
                buf.append(text[pos])
                pos += 1
            items.append("".join(buf))
            pos += 1
        else:
            start = pos
            while text[pos] not in ",}":
                pos += 1
            raw = text[start:pos].strip()
            items.append(None if raw.upper() == "NULL" else raw)
        if text[pos] == "}":
            return items, pos + 1
        pos += 1  # the comma


def record_json(relation: Relation, values: Values, types: dict[int, TypeInfo]) -> RawJSON:
    """A row as a JSON object, encoded once; unchanged TOAST values are left out."""
    parts = []
    for column, value in zip(relation.columns, values, strict=True):
        if value is UNCHANGED_TOAST:
            continue
        rendered = "null" if value is None else to_json(str(value), types.get(column.type_oid), types)
        parts.append(f"{json.dumps(column.name)}:{rendered}")
    return RawJSON("{" + ",".join(parts) + "}")

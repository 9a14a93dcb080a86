"""postgres_changes and database broadcasts: each decoded transaction to the channels whose bindings match
it, rendered as Realtime renders it (RLS checked per subscriber, filters applied)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime
from typing import Any

from . import change_filters
from .channels import ChannelRegistry
from .database import VISIBILITY_WAIT, Database
from .frames import Frame, RawJSON, encode
from .pgoutput import UNCHANGED_TOAST, Change, Column, Relation, Transaction, record_json

__all__ = ["ChangeDispatcher"]

log = logging.getLogger("supabase_push.local")


class ChangeDispatcher:
    def __init__(self, db: Database, registry: ChannelRegistry) -> None:
        self.db = db
        self.registry = registry
        self.delivered = 0  # postgres_changes and database broadcasts sent to clients
        self._columns: dict[int, tuple[Relation, str]] = {}  # relation oid -> (Relation, columns JSON)
        # relation oid -> (when read, its primary key if RLS is on): read again after a second, since
        # ALTER TABLE ... ENABLE ROW LEVEL SECURITY sends no new Relation message
        self._row_security: dict[int, tuple[float, tuple[str, ...] | None]] = {}
        self._visible: Transaction | None = None  # the last transaction seen visible before an RLS check

    async def run(self, changes: asyncio.Queue[Transaction]) -> None:
        """Until cancelled: each transaction the decoding stream puts on ``changes``."""
        while True:
            transaction = await changes.get()
            try:
                for relation in {ch.relation.oid: ch.relation for ch in transaction.changes}.values():
                    if self._columns.get(relation.oid, (None, ""))[0] is not relation:
                        await self._learn(relation)
                for change in transaction.changes:
                    await self._dispatch(change, transaction)
            except Exception:  # one bad change must not stop the stream for everyone
                log.exception("could not deliver a change of transaction %s", transaction.xid)

    async def _learn(self, relation: Relation) -> None:
        """Once per Relation message (not per change): type names, and the ``columns`` JSON."""
        if any(c.type_oid not in self.db.types for c in relation.columns):
            await self.db.load_types()  # a type created since start
        types = self.db.types
        columns = [{"name": c.name, "type": types[c.type_oid].name if c.type_oid in types else str(c.type_oid)}
                   for c in relation.columns]
        self._columns[relation.oid] = (relation, json.dumps(columns))

    async def _dispatch(self, change: Change, transaction: Transaction) -> None:
        relation = change.relation
        if (relation.schema, relation.table) == ("realtime", "messages"):
            if change.op == "INSERT" and change.new is not None:
                self._database_broadcast(change)
            return
        listeners = self.registry.listeners(relation.schema, relation.table)
        if not listeners:
            return
        data = self._change_data(change, transaction)
        # Filters see the new row, or the old one for a DELETE.
        row = (change.old if change.op == "DELETE" else change.new) or []
        filtered_row = {c.name: (v, c) for c, v in zip(relation.columns, row, strict=False)}
        checked = any(channel.claims.get("role") != "service_role" for channel, _ in listeners)
        key = await self._rls_key(change) if checked else None
        if key is not None and self._visible is not transaction:
            if not await self.db.until_visible(transaction.xid):
                log.warning("transaction %s is not visible %.0f s after its commit was decoded: its RLS checks go"
                            " ahead (an inserted row is withheld)", transaction.xid, VISIBILITY_WAIT)
            self._visible = transaction
        for channel, bindings in listeners:
            ids = [b.id for b in bindings if b.event in ("*", change.op)
                   and (b.filter is None or self._passes(b.filter, filtered_row.get(b.filter.column)))]
            if ids and key is not None and channel.claims.get("role") != "service_role" and not \
                    await self.db.row_visible(channel.claims, relation.schema, relation.table, key):
                continue
            if ids:
                payload = RawJSON(f'{{"ids":{json.dumps(ids)},"data":{data}}}')
                channel.receiver.deliver(encode(channel.receiver.vsn,
                                                Frame(channel.topic, "postgres_changes", payload)))
                self.delivered += 1

    async def _rls_key(self, change: Change) -> dict[str, Any] | None:
        """The primary key to check each subscriber's RLS with, or None when everyone gets the change:
        a table without RLS, and DELETEs (the row is gone; Supabase sends them to every subscriber)."""
        if change.op == "DELETE" or change.new is None:
            return None
        oid = change.relation.oid
        read_at, key_columns = self._row_security.get(oid, (0.0, None))
        if time.monotonic() - read_at > 1.0:
            key_columns = await self.db.row_security(oid)
            self._row_security[oid] = (time.monotonic(), key_columns)
        if not key_columns:
            return None
        values = dict(zip((c.name for c in change.relation.columns), change.new, strict=False))
        return {column: values.get(column) for column in key_columns}

    def _passes(self, row_filter: change_filters.Filter, cell: tuple[object, Column] | None) -> bool:
        if cell is None or cell[0] is None or cell[0] is UNCHANGED_TOAST:
            return row_filter.matches(None, "S")
        value, column = cell
        info = self.db.types.get(column.type_oid)
        return row_filter.matches(str(value), info.category if info else "S")

    def _change_data(self, change: Change, transaction: Transaction) -> str:
        relation, types = change.relation, self.db.types
        parts = [f'"schema":{json.dumps(relation.schema)}', f'"table":{json.dumps(relation.table)}',
                 f'"commit_timestamp":{json.dumps(_commit_timestamp(transaction.commit_time))}',
                 f'"type":"{change.op}"', f'"columns":{self._columns[relation.oid][1]}']
        if change.new is not None:
            parts.append(f'"record":{record_json(relation, change.new, types)}')
        old = change.old
        if old is None and change.op == "UPDATE" and change.new is not None:
            # pgoutput sends no old tuple while the key is unchanged; the key is in the new one
            old = [v if c.is_key else UNCHANGED_TOAST for c, v in zip(relation.columns, change.new, strict=True)]
        if old is not None:
            parts.append(f'"old_record":{record_json(relation, old, types)}')
        parts.append('"errors":null')
        return "{" + ",".join(parts) + "}"

    def _database_broadcast(self, change: Change) -> None:
        assert change.new is not None
        row = {c.name: v for c, v in zip(change.relation.columns, change.new, strict=True)}
        if row.get("extension") != "broadcast" or not isinstance(row.get("topic"), str):
            return
        payload = row.get("payload")
        body = RawJSON(
            f'{{"type":"broadcast","event":{json.dumps(row.get("event"))},'
            f'"payload":{payload if isinstance(payload, str) else "{}"},"meta":{{"id":{json.dumps(row.get("id"))}}}}}')
        self.delivered += self.registry.broadcast((row.get("private") == "t", str(row["topic"])), body)


def _commit_timestamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"

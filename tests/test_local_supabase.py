"""The local server as a Supabase project for the official clients, end to end: Auth, REST through a real
PostgREST under RLS, and Realtime (postgres_changes and our triggers' database broadcasts), with the
legacy JWT keys and the new sb_ keys."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from realtime import AsyncRealtimeClient
from realtime import RealtimePostgresChangesListenEvent as Event
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from supabase_push import schema
from supabase_push.local import LocalRealtime, ServerConfig
from supabase_push.local.stack import SUPABASE_GRANTS

from .realtime_helpers import Inbox, JsAgent, options, unique
from .test_local_python import subscribe

NOTES = """
CREATE TABLE IF NOT EXISTS notes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id uuid NOT NULL DEFAULT auth.uid() REFERENCES auth.users (id),
    body text NOT NULL
);
ALTER TABLE notes REPLICA IDENTITY FULL;
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS own_notes ON notes;
CREATE POLICY own_notes ON notes FOR ALL TO authenticated
    USING (user_id = auth.uid()) WITH CHECK (user_id = auth.uid());
DROP POLICY IF EXISTS signed_in_hear_notes ON realtime.messages;
CREATE POLICY signed_in_hear_notes ON realtime.messages FOR SELECT TO authenticated
    USING (realtime.topic() = 'note-updates');
"""


@pytest.fixture(scope="module")
def notes(realtime: LocalRealtime, realtime_db: str) -> Iterator[str]:
    """A table of per-user notes under RLS, routed by our triggers to the private topic note-updates."""
    with psycopg.connect(realtime_db, autocommit=True) as conn:
        conn.execute(NOTES)
        conn.execute(SUPABASE_GRANTS)
        schema.apply(conn, [schema.Route("notes", "note-updates")])
    yield "notes"


async def close(client: AsyncClient) -> None:
    """supabase-py has no close(): the realtime socket, and the HTTP client its parts share (ours: each
    auth event makes it drop its PostgREST client, which would leak that client's own connections)."""
    await client.realtime.close()
    assert client.options.httpx_client is not None
    await client.options.httpx_client.aclose()


def keys(server: LocalRealtime, style: str) -> tuple[str, str]:
    return (server.anon_key, server.service_role_key) if style == "jwt" else (server.publishable_key, server.secret_key)


async def signed_up(server: LocalRealtime, key: str) -> tuple[AsyncClient, str]:
    client = await acreate_client(server.url, key, AsyncClientOptions(httpx_client=httpx.AsyncClient()))
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    response = await client.auth.sign_up({"email": email, "password": "correct horse"})
    assert response.user is not None and response.session is not None
    return client, response.user.id


@pytest.mark.parametrize("style", ["jwt", "sb"])
async def test_supabase_py_signs_up_writes_through_rest_and_hears_its_row(
        realtime: LocalRealtime, notes: str, style: str) -> None:
    anon, _ = keys(realtime, style)
    alice, alice_id = await signed_up(realtime, anon)
    bob, bob_id = await signed_up(realtime, anon)
    assert bob_id != alice_id
    changes, broadcasts, bobs = Inbox(), Inbox(), Inbox()
    channel = alice.channel("note-updates", options(private=True))
    channel.on_postgres_changes(Event.All, schema="public", table=notes, filter=f"user_id=eq.{alice_id}",
                                callback=changes)
    channel.on_broadcast("*", broadcasts)
    bob_channel = bob.channel("bob-notes")  # every change of the table, no filter: RLS must keep alice's out
    bob_channel.on_postgres_changes(Event.All, schema="public", table=notes, callback=bobs)
    try:
        for subscribing in (channel, bob_channel):
            await subscribe(subscribing)

        inserted: Any = (await alice.table(notes).insert({"body": "buy SPY"}).execute()).data
        assert inserted[0]["user_id"] == alice_id  # auth.uid() of alice's token, through PostgREST
        note_id = inserted[0]["id"]
        await alice.table(notes).update({"body": "sell SPY"}).eq("id", note_id).execute()

        [insert] = await changes.wait_for(lambda c: c["data"]["type"] == "INSERT")
        [update] = await changes.wait_for(lambda c: c["data"]["type"] == "UPDATE")
        assert insert["data"]["record"]["id"] == note_id and update["data"]["record"]["body"] == "sell SPY"
        pushed = await broadcasts.wait_for(lambda b: b["payload"].get("record", {}).get("id") == note_id
                                           and b["payload"]["op"] == "UPDATE")
        assert pushed[0]["payload"]["record"]["body"] == "sell SPY" and pushed[0]["event"] == "UPDATE"

        assert (await bob.table(notes).select("*").execute()).data == []  # RLS: none of alice's rows
        mine: Any = (await alice.table(notes).select("*").execute()).data
        assert [n["id"] for n in mine] == [note_id]
        await bob.table(notes).insert({"body": "bob's own"}).execute()
        [own] = await bobs.wait_for(lambda c: c["data"]["type"] == "INSERT")
        assert own["data"]["record"]["user_id"] == bob_id  # bob hears his own row, and nothing of alice's
        assert all(c["data"]["record"]["user_id"] == bob_id for c in bobs.items)
    finally:
        for client in (alice, bob):
            await client.auth.sign_out()
            await close(client)


async def test_sign_in_refresh_user_and_sign_out(realtime: LocalRealtime) -> None:
    client, user_id = await signed_up(realtime, realtime.publishable_key)
    found = await client.auth.get_user()
    assert found is not None and found.user.email is not None
    email = found.user.email
    await client.auth.sign_out()
    assert await client.auth.get_session() is None
    signed_in = await client.auth.sign_in_with_password({"email": email, "password": "correct horse"})
    assert signed_in.user is not None and signed_in.user.id == user_id and signed_in.session is not None
    old_refresh = signed_in.session.refresh_token
    refreshed = await client.auth.refresh_session()
    assert refreshed.session is not None and refreshed.session.refresh_token != old_refresh
    with pytest.raises(Exception, match="Invalid login credentials"):
        await client.auth.sign_in_with_password({"email": email, "password": "wrong horse"})
    anonymous = await client.auth.sign_in_anonymously()
    assert anonymous.user is not None and anonymous.user.is_anonymous
    await close(client)


async def test_the_gateway_refuses_missing_and_wrong_keys(realtime: LocalRealtime, notes: str) -> None:
    async with httpx.AsyncClient(base_url=realtime.url) as http:
        missing = await http.get(f"/rest/v1/{notes}")
        wrong = await http.get(f"/rest/v1/{notes}", headers={"apikey": "sb_publishable_wrong"})
        bearer_key = await http.get(f"/rest/v1/{notes}", headers={"apikey": realtime.anon_key,
                                                                   "Authorization": f"Bearer {realtime.secret_key}"})
        service = await http.get(f"/rest/v1/{notes}", headers={"apikey": realtime.secret_key})
        auth_wrong = await http.post("/auth/v1/signup", json={"email": "x@example.com", "password": "123456"},
                                     headers={"apikey": "nope"})
    assert missing.status_code == 401 and missing.json()["message"] == "No API key found in request"
    assert wrong.status_code == 401 and wrong.json()["message"] == "Invalid API key"
    assert bearer_key.status_code == 401 and auth_wrong.status_code == 401
    assert service.status_code == 200 and isinstance(service.json(), list)  # service_role: every row


@pytest.mark.parametrize("style", ["jwt", "sb"])
async def test_supabase_js_signs_up_writes_through_rest_and_hears_its_row(
        realtime: LocalRealtime, notes: str, style: str) -> None:
    anon, _ = keys(realtime, style)
    agent = await JsAgent.start(realtime.url, anon, "2.0.0")
    try:
        email = f"{uuid.uuid4().hex[:10]}@example.com"
        await agent.send(cmd="signUp", email=email, password="correct horse")
        [signed] = await agent.wait_for(lambda e: e["type"] == "signedUp")
        assert signed["error"] is None, signed
        user_id = signed["user"]["id"]
        mine = {"event": "*", "schema": "public", "table": notes, "filter": f"user_id=eq.{user_id}"}
        await agent.send(cmd="subscribe", name="note-updates", config={"private": True}, changes=[mine])
        await agent.subscribed("note-updates")
        await agent.send(cmd="insert", table=notes, row={"body": "from js"})
        [inserted] = await agent.wait_for(lambda e: e["type"] == "inserted")
        assert inserted["error"] is None and inserted["rows"][0]["user_id"] == user_id, inserted
        note_id = inserted["rows"][0]["id"]
        await agent.send(cmd="update", table=notes, id=note_id, row={"body": "edited in js"})
        [updated] = await agent.wait_for(lambda e: e["type"] == "updated")
        assert updated["error"] is None and updated["rows"][0]["body"] == "edited in js", updated
        changes = await agent.wait_for(lambda e: e["type"] == "postgres_changes" and e["payload"]["eventType"]
                                       == "UPDATE" and e["payload"]["new"].get("id") == note_id)
        assert changes[0]["payload"]["new"]["body"] == "edited in js"
        assert [e["payload"]["eventType"] for e in agent.inbox.items if e["type"] == "postgres_changes"] == \
            ["INSERT", "UPDATE"]
        await agent.wait_for(lambda e: e["type"] == "broadcast" and e["payload"]["event"] == "UPDATE"
                             and e["payload"]["payload"].get("record", {}).get("id") == note_id)
    finally:
        await agent.close()




async def test_without_a_postgrest_binary_rest_says_why_and_the_rest_works(
        realtime_db: str, caplog: pytest.LogCaptureFixture) -> None:
    async with LocalRealtime(realtime_db, ServerConfig(port=0, postgrest="/nonexistent/postgrest")) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            rest = await http.get("/rest/v1/trades", headers={"apikey": server.anon_key})
            auth = await http.get("/auth/v1/health", headers={"apikey": server.anon_key})
        client = AsyncRealtimeClient(server.realtime_url, server.anon_key)
        try:
            await subscribe(client.channel(unique("still-works")))
        finally:
            await client.close()
    assert rest.status_code == 503 and "no PostgREST binary" in rest.json()["message"]
    assert auth.status_code == 200
    assert server.postgrest is None and server.rest_unavailable is not None
    said = [r for r in caplog.records if "no PostgREST binary" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "WARNING"


async def test_a_table_created_while_serving_is_served(realtime: LocalRealtime, realtime_db: str) -> None:
    """PostgREST caches the schema; the gateway has it reload on a table it does not know, as Supabase's
    DDL event triggers make it do, instead of answering 404."""
    table = f"late_rest_{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=realtime.url, headers={"apikey": realtime.secret_key}) as http:
        assert (await http.get("/rest/v1/")).status_code == 200  # PostgREST has read its schema by now
        with psycopg.connect(realtime_db, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, note text)")
            conn.execute(SUPABASE_GRANTS)
        created = await http.post(f"/rest/v1/{table}", json={"id": 1, "note": "late"},
                                  headers={"Prefer": "return=representation"})
        read = await http.get(f"/rest/v1/{table}?select=note")
    assert created.status_code == 201, created.text
    assert read.json() == [{"note": "late"}]


async def test_auth_refuses_bad_input_with_gotrue_errors(realtime: LocalRealtime) -> None:
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    async with httpx.AsyncClient(base_url=f"{realtime.url}/auth/v1",
                                 headers={"apikey": realtime.publishable_key}) as http:
        weak = await http.post("/signup", json={"email": email, "password": "12345"})
        bad_email = await http.post("/signup", json={"email": "not-an-email", "password": "123456"})
        garbage = await http.post("/signup", content=b"\xff{not json")
        first = await http.post("/signup", json={"email": email, "password": "123456"})
        again = await http.post("/signup", json={"email": email.upper(), "password": "654321"})
        refresh = first.json()["refresh_token"]
        rotated = await http.post("/token?grant_type=refresh_token", json={"refresh_token": refresh})
        reused = await http.post("/token?grant_type=refresh_token", json={"refresh_token": refresh})
        no_token = await http.get("/user")
        forged = await http.get("/user", headers={"Authorization": f"Bearer {realtime.anon_key}"})
        grant = await http.post("/token?grant_type=magic", json={})
    assert (weak.status_code, weak.json()["error_code"]) == (422, "weak_password")
    assert (bad_email.status_code, bad_email.json()["error_code"]) == (400, "validation_failed")
    assert garbage.status_code == 400
    assert first.status_code == 200 and (again.status_code, again.json()["error_code"]) == (422, "user_already_exists")
    assert rotated.status_code == 200 and rotated.json()["refresh_token"] != refresh
    assert (reused.status_code, reused.json()["error_code"]) == (400, "refresh_token_not_found")
    assert no_token.status_code == 401 and forged.status_code == 401  # a key is not a user
    assert (grant.status_code, grant.json()["error_code"]) == (400, "unsupported_grant_type")

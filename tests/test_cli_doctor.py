"""``supabase-push doctor``: per transport what works and what to fix, against the real services."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from supabase_push.cli import app
from supabase_push.doctor import key_kind
from supabase_push.local import LocalRealtime, tokens

from .http_faults import FaultProxy
from .postgrest import PostgREST

runner = CliRunner()


def doctor(env: dict[str, str], *args: str) -> tuple[int, dict[str, dict[str, Any]], str]:
    result = runner.invoke(app, ["doctor", "--json", "--timeout", "3", *args], env=env)
    report = json.loads(result.stdout)
    return result.exit_code, {f["check"]: f for f in report["findings"]}, result.output


def test_everything_works(realtime: LocalRealtime, realtime_db: str) -> None:
    with PostgREST(realtime_db, tokens.DEV_SECRET) as api:
        env = {"SUPABASE_URL": realtime.url, "SUPABASE_SERVICE_ROLE_KEY": realtime.service_role_key,
               "DATABASE_URL": realtime_db, "SUPABASE_PUSH_REST_URL": api.url}
        code, found, output = doctor(env)
    assert code == 0, output
    for check in ("SUPABASE_SERVICE_ROLE_KEY", "connect", "triggers and change log", "LISTEN/NOTIFY round trip",
                  "connect and join trade-updates", "REST broadcast (per event)", "PostgREST reads the change log"):
        assert found[check]["status"] == "ok", found[check]
    assert realtime.service_role_key not in output
    assert "postgres:" not in output.replace("postgres://", "")  # no password in the redacted URL


def test_unreachable_url_and_a_wrong_key_type(realtime: LocalRealtime, installed_url: str) -> None:
    env = {"SUPABASE_URL": "http://127.0.0.1:1", "SUPABASE_SERVICE_ROLE_KEY": realtime.anon_key,
           "DATABASE_URL": installed_url}
    code, found, output = doctor(env)
    assert code == 1
    assert found["SUPABASE_SERVICE_ROLE_KEY"]["status"] == "fail"
    assert "wrong key type: anon" in found["SUPABASE_SERVICE_ROLE_KEY"]["detail"]
    assert found["connect and join trade-updates"]["status"] == "fail"
    assert "cannot connect" in found["connect and join trade-updates"]["detail"]
    assert found["connect"]["status"] == "ok" and found["LISTEN/NOTIFY round trip"]["status"] == "ok"
    assert realtime.anon_key not in output


def test_publication_and_replica_identity(installed_url: str) -> None:
    with psycopg.connect(installed_url, autocommit=True) as conn:
        conn.execute("ALTER PUBLICATION supabase_realtime DROP TABLE public.trades")
        conn.execute("ALTER TABLE public.trades REPLICA IDENTITY DEFAULT")
    code, found, _ = doctor({"DATABASE_URL": installed_url})
    assert code == 1
    missing = found["public.trades in publication supabase_realtime"]
    assert missing["status"] == "fail"
    assert missing["fix"].endswith('ALTER PUBLICATION supabase_realtime ADD TABLE "public"."trades"')
    assert found["triggers and change log"]["status"] == "ok"
    assert found["public.positions in publication supabase_realtime"]["status"] == "ok"
    assert found["public.positions REPLICA IDENTITY FULL"]["status"] == "ok"
    assert found["public.trades REPLICA IDENTITY FULL"]["status"] == "warn"
    assert found["Supabase Realtime"]["status"] == "skip"


def test_tables_created_by_apply_need_no_fix(make_db: Any) -> None:
    """Regression: doctor right after `apply --create-tables` warned three times about tables the tool had
    just created; and at 80 columns its fix SQL was cut mid-identifier."""
    url = make_db("empty")
    assert runner.invoke(app, ["apply", "--create-tables", "--db-url", url]).exit_code == 0
    code, found, _ = doctor({"DATABASE_URL": url})
    assert code == 0
    for table in ("positions", "trades", "portfolio_snapshots"):
        assert found[f"public.{table} REPLICA IDENTITY FULL"]["status"] == "ok"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute('CREATE TABLE "A Rather Long Schema Name For Orders" (id int PRIMARY KEY)')
    assert runner.invoke(app, ["apply", "-t", '"A Rather Long Schema Name For Orders"=orders',
                               "--db-url", url]).exit_code == 0
    text = runner.invoke(app, ["doctor", "--timeout", "3"], env={"DATABASE_URL": url, "COLUMNS": "80"}).output
    fix = 'ALTER TABLE "public"."A Rather Long Schema Name For Orders" REPLICA IDENTITY FULL'
    assert any(fix in line for line in text.splitlines()), text  # whole, on one line: never cut, never folded
    assert "…" not in text


def test_a_partitioned_route_is_checked_by_its_partitions(installed_url: str) -> None:
    """Its partitions log the rows, each with its own replica identity (ALTER TABLE on the partitioned table
    does not reach them), and it is published as them."""
    with psycopg.connect(installed_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE fills (id bigint, ts timestamptz NOT NULL, PRIMARY KEY (id, ts))"
                     " PARTITION BY RANGE (ts)")
        conn.execute("CREATE TABLE fills_2026 PARTITION OF fills FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
        conn.execute("CREATE TABLE fills_2027 PARTITION OF fills FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')")
        conn.execute("ALTER TABLE fills REPLICA IDENTITY FULL")
        conn.execute("ALTER TABLE fills_2027 REPLICA IDENTITY FULL")
    assert runner.invoke(app, ["apply", "-t", "fills=fill-updates", "--db-url", installed_url]).exit_code == 0
    _, found, _ = doctor({"DATABASE_URL": installed_url})
    assert found["public.fills in publication supabase_realtime"]["status"] == "ok"
    identity = found["public.fills REPLICA IDENTITY FULL"]
    assert identity["status"] == "warn"
    assert identity["fix"] == 'ALTER TABLE "public"."fills_2026" REPLICA IDENTITY FULL'
    with psycopg.connect(installed_url, autocommit=True) as conn:
        conn.execute(identity["fix"])
    _, found, _ = doctor({"DATABASE_URL": installed_url})
    assert found["public.fills REPLICA IDENTITY FULL"]["status"] == "ok"


def test_not_installed(db_url: str) -> None:
    code, found, _ = doctor({"DATABASE_URL": db_url})
    assert code == 1 and found["triggers and change log"]["fix"] == "run `supabase-push apply`"


async def test_realtime_too_old_for_per_event_rest(realtime: LocalRealtime) -> None:
    async with FaultProxy(realtime.url) as proxy:
        proxy.per_event_404 = True
        from supabase_push.config import Settings
        from supabase_push.doctor import diagnose

        report = await diagnose(Settings(supabase_url=proxy.url, service_role_key=realtime.service_role_key),
                                timeout=2)
    found = {f.check: f for f in report.findings}
    assert found["REST broadcast (per event)"].status == "warn"
    assert "older than 2.97" in found["REST broadcast (per event)"].detail


def test_nothing_configured() -> None:
    code, found, _ = doctor({})
    assert code == 1 and found["anything to connect to"]["status"] == "fail"


@pytest.mark.parametrize(("role", "kind"), [("service_role", "service_role"), ("anon", "anon")])
def test_key_kind(role: str, kind: str) -> None:
    assert key_kind(tokens.mint(role, tokens.DEV_SECRET)) == kind
    assert key_kind(tokens.mint(role, tokens.DEV_SECRET, ttl=-10)) == "expired"
    assert key_kind("sb_secret_abc") == "secret" and key_kind("garbage") == "unknown"

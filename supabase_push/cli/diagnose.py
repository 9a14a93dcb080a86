"""doctor: what is configured, what answers, and what to fix."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ._app import (
    DbUrl,
    JsonOut,
    RestUrl,
    app,
    out,
    print_json,
    reporting_errors,
    settings_with,
)


@app.command()
def doctor(
    db_url: DbUrl = None,
    rest_url: RestUrl = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each service.")] = 5.0,
    as_json: JsonOut = False,
) -> None:
    """Check the configuration and, per transport (database, LISTEN, Realtime, PostgREST), what
    works and what to fix. Exit 1 if anything fails; warnings alone exit 0. Never prints a key."""
    import asyncio

    from ..doctor import diagnose

    with reporting_errors(as_json):
        settings = settings_with(db_url)
        report = asyncio.run(diagnose(settings, rest_url=rest_url, timeout=timeout))
    if as_json:
        print_json(report.as_dict())
    else:
        style = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}
        table = Table(show_header=True, header_style="bold", expand=False)
        for column in ("area", "check", "", "detail"):
            table.add_column(column, overflow="fold")
        fixes = [f for f in report.findings if f.fix]
        for finding in report.findings:
            detail = escape(finding.detail)
            if finding.fix:
                detail += f" [dim](fix {fixes.index(finding) + 1} below)[/dim]"
            table.add_row(finding.area, finding.check, f"[{style[finding.status]}]{finding.status}[/]", detail)
        out.print(table)
        for number, finding in enumerate(fixes, 1):  # whole lines: a command to copy is never cut or folded
            out.print(f"fix {number} ({escape(finding.check)}): {escape(finding.fix or '')}", soft_wrap=True)
        failed = sum(f.status == "fail" for f in report.findings)
        warned = sum(f.status == "warn" for f in report.findings)
        out.print(f"[{'red' if failed else 'green'}]{failed} failed[/], {warned} warning(s)")
    if not report.ok:
        raise typer.Exit(1)

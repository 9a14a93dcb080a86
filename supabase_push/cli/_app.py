"""The Typer app, the options and the error reporting every command shares, and ``main``."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from .. import __version__
from ..config import Settings
from ..errors import AccessRefusedError, ConfigError, PayloadError, SupabasePushError

app = typer.Typer(
    name="supabase-push",
    help="Push position, trade and portfolio changes from Postgres/Supabase to the programs "
    "that watch them. Exit codes: 0 ok, 1 failed (or verify found a problem), 2 bad usage.",
    no_args_is_help=True,
    rich_markup_mode="markdown",  # a docstring's paragraphs are reflowed, not broken where the source wraps
    pretty_exceptions_enable=False,
    add_completion=False,
)


out = Console(highlight=False, soft_wrap=True)


err = Console(stderr=True, highlight=False)


DbUrl = Annotated[
    str | None,
    typer.Option("--db-url", envvar="DATABASE_URL", show_envvar=True, show_default=False, metavar="URL",
                 help="Postgres URL: postgresql://user:pw@host/db"),
]


JsonOut = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]


RestUrl = Annotated[
    str | None,
    typer.Option(envvar="SUPABASE_PUSH_REST_URL", show_envvar=True, show_default=False, metavar="URL",
                 help="PostgREST base URL for reading the change log (default <SUPABASE_URL>/rest/v1)."),
]


DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the SQL instead of running it.")]


PayloadOption = Annotated[str | None, typer.Option(
    "--data", "-d", show_default=False, help="The payload, a JSON object. Without it the payload is read from stdin.")]


def _version(value: bool) -> None:
    if value:
        out.print(f"supabase-push {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:  # the official client logs every failed attempt; ours says what matters once
        logging.getLogger("realtime").setLevel(logging.CRITICAL)


def fail(exc: SupabasePushError, as_json: bool) -> NoReturn:
    code = 2 if isinstance(exc, ConfigError | PayloadError | AccessRefusedError) else 1
    if as_json:
        print(json.dumps({"ok": False, "error": exc.message, "hint": exc.hint,
                          "type": type(exc).__name__}))
    err.print(f"[red]error:[/red] {escape(exc.message)}", markup=True, soft_wrap=True)
    if exc.hint:  # escaped: "pip install 'supabase-push[relay]'" is not markup
        err.print(f"[dim]hint:[/dim] {escape(exc.hint)}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def reporting_errors(as_json: bool) -> Iterator[None]:
    """One clear line and a hint for every error a user can hit, never a traceback."""
    try:
        yield
    except SupabasePushError as exc:
        fail(exc, as_json)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def settings_with(db_url: str | None) -> Settings:
    """The environment's settings, with ``--db-url`` in place of DATABASE_URL."""
    settings = Settings.from_env()
    return dataclasses.replace(settings, database_url=db_url) if db_url else settings


def sayer(quiet: bool) -> Callable[[str], None]:
    return (lambda _text: None) if quiet else (lambda text: out.print(text))


_METAVARS = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT"}


def _conventional_help(command: Any) -> None:
    """Typer's conventions in --help (``--json``, ``-t TABLE=TOPIC``, ``--port INTEGER``, ``TOPIC``): newer
    Typer releases label every parameter with its Python type instead (``--json <bool>``, ``<list[str]>``)."""
    for sub in getattr(command, "commands", {}).values():
        _conventional_help(sub)
    help_option = command.get_help_option(typer.Context(command))  # made once and kept: label it too
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if param.metavar is not None or not hasattr(param, "bare_type"):
            continue  # chosen by hand, or a Typer that already labels parameters the classic way
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif isinstance(param, typer.core.TyperArgument):
            param.metavar = param.name.upper()
        else:
            bare = param.bare_type().removeprefix("list[").removesuffix("]")
            param.metavar = _METAVARS.get(bare, bare.upper())


def main() -> None:
    command = typer.main.get_command(app)
    _conventional_help(command)
    command(prog_name="supabase-push")

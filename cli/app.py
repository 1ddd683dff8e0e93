"""The `agentledger` command: the root, its options and where each subcommand lives.

A subcommand's module is imported only when that subcommand runs (or help or completion asks for
it), and those modules import what their work needs only inside the function that does it, so
`agentledger --version` loads typer and nothing of the ledger, and a command loads the client
and its own options, not the engine.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Any

import click
import typer
from typer.core import TyperCommand, TyperGroup

EXIT_CODES = (
    "Exit codes: 0 done; 1 refused (an error reply, or bad input caught before sending); 2 bad usage; "
    "66 a credentials file named by --creds or NATS_CREDS does not exist; "
    "75 retryable (NATS or the engine unreachable, no reply in time, or an error marked retryable: repeat with the "
    "same --command-id); 77 not authorised (NATS refused the credentials); 78 no credentials found (NATS wants "
    "some: --creds, NATS_CREDS, .agentledger/auth/admin.creds here or in a parent directory, or "
    "~/.config/agentledger/credentials.creds).")

# name -> (module, attribute): a command function or a typer.Typer group. The protocol's own
# groups (project, thread, session, ...) come from `client_commands`, one per first name part.
LAZY: dict[str, tuple[str, str]] = {
    "serve": ("agentledger.cli.server_commands", "serve"),
    "effects": ("agentledger.cli.server_commands", "effects"),
    "schema": ("agentledger.cli.contract_commands", "schema"),
    "asyncapi": ("agentledger.cli.contract_commands", "asyncapi"),
    "replay": ("agentledger.cli.log_commands", "replay"),
    "ui": ("agentledger.cli.ui.command", "ui"),
    "auth": ("agentledger.cli.tenant_commands", "auth"),
    "tenant": ("agentledger.cli.tenant_commands", "tenant"),
    "workers": ("agentledger.cli.worker_commands", "workers"),
}


class _Flags:
    """Flags (`--json`, `--version`) show no `<bool>` in help: they take no value."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params: list[click.Parameter] = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class Command(_Flags, TyperCommand):
    pass


class Group(_Flags, TyperGroup):
    pass


def _quiet(group: typer.Typer) -> typer.Typer:
    """Every command of `group` made with the classes above (typer's own extension point)."""
    if not isinstance(group.info.cls, type) or group.info.cls is TyperGroup:  # typer's default (a placeholder)
        group.info.cls = Group
    for info in group.registered_commands:
        if info.cls in (None, TyperCommand):
            info.cls = Command
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _quiet(sub.typer_instance)
    return group


def as_click(target: Any, name: str) -> click.Command:
    """A command function or a typer.Typer as the click command typer would make of it."""
    if isinstance(target, typer.Typer):
        command = typer.main.get_group(_quiet(target))
    else:
        single = typer.Typer(add_completion=False)
        single.command(name, cls=Command)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class LazyGroup(Group):
    """The root: subcommands imported when asked for, not when the program starts."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from agentledger.cli import client_commands

        return [*LAZY, *client_commands.group_names()]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY:
            module, attribute = LAZY[cmd_name]
            return as_click(getattr(importlib.import_module(module), attribute), cmd_name)
        from agentledger.cli import client_commands

        group = client_commands.group(cmd_name)
        return None if group is None else as_click(group, cmd_name)


app = typer.Typer(cls=LazyGroup, no_args_is_help=True, epilog=EXIT_CODES,
                  help="Agent Ledger: threads, sessions and delegation on an event log.")


def _print_version(asked: bool) -> None:
    if asked:
        from importlib import metadata

        print(f"agentledger {metadata.version('agentledger')}")
        raise typer.Exit()


@app.callback()
def root(
    log_format: Annotated[str, typer.Option(envvar="AGENTLEDGER_LOG_FORMAT",
                                            help="auto (human on a terminal, else JSON lines), json or human")] = "auto",
    log_level: Annotated[str, typer.Option(envvar="AGENTLEDGER_LOG_LEVEL", help="debug, info, warning, error")] = "info",
    _version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                           help="print the version and exit")] = False,
) -> None:
    """Agent Ledger: threads, sessions and delegation on an event log."""
    from agentledger.handlers.observability import logs

    logs.configure(log_format, log_level)

"""`agentledger auth init`, `tenant add`, `tenant set`, `tenant creds`, `tenant revoke`, `tenant list`:
operating the trust boundary. They work from the deployment's key directory (`--auth-dir`, the one `serve`
makes for its embedded server); `tenant add` and `tenant set` also tell the running NATS and the engines,
which take them at once."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from agentledger.cli.output import EXIT_REFUSED, EXIT_RETRYABLE, EXIT_USAGE
from agentledger.cli.transport import DEFAULT_URL, fail, tool_connect

auth = typer.Typer(no_args_is_help=True, help="The deployment's NATS keys (operator mode).")
tenant = typer.Typer(no_args_is_help=True, help="Tenants: one NATS account each, and their users' credentials.")

AuthDir = Annotated[Path, typer.Option("--auth-dir", envvar="AGENTLEDGER_AUTH_DIR",
                                       help="the deployment's keys (keep it secret)")]
DEFAULT_AUTH_DIR = Path(".agentledger/auth")
_SIZES = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def _limit(option: str, text: str | None, number: type, units: bool = False) -> object:
    """An option's value: a number (bytes may end in K, M, G or T), None for `none` (no limit), or
    `...` when the option was left out."""
    if text is None:
        return ...
    value, scale = text.strip().upper(), 1
    if value == "NONE":
        return None
    if units and value[-1:] in _SIZES:
        value, scale = value[:-1], _SIZES[value[-1]]
    try:
        return number(float(value) * scale)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: a number{' (K, M, G or T)' if units else ''} or none",
                                 param_hint=option) from None


def _quota(base, commands_per_second: str | None, queries_per_second: str | None,  # type: ignore[no-untyped-def]
           max_events: str | None, storage: str | None):
    """`base` with the limits given on the command line changed."""
    import msgspec

    from agentledger.schemas.tenants import TenantQuota

    given = {name: value for name, value in (
        ("commands_per_second", _limit("--commands-per-second", commands_per_second, float)),
        ("queries_per_second", _limit("--queries-per-second", queries_per_second, float)),
        ("max_events", _limit("--max-events", max_events, int)),
        ("storage_bytes", _limit("--storage", storage, int, units=True))) if value is not ...}
    try:
        return msgspec.convert(msgspec.to_builtins(msgspec.structs.replace(base, **given)), TenantQuota)
    except msgspec.ValidationError as e:
        raise typer.BadParameter(str(e)) from None


def _shown(quota) -> str:  # type: ignore[no-untyped-def]
    import msgspec

    limits = msgspec.to_builtins(quota)
    return ", ".join(f"{k} {v}" for k, v in limits.items()) or "no limits"


CommandsPerSecond = Annotated[str | None, typer.Option(
    "--commands-per-second", metavar="N|none", help="commands per second, per engine replica (rate_limited beyond)")]
QueriesPerSecond = Annotated[str | None, typer.Option(
    "--queries-per-second", metavar="N|none", help="queries per second, per engine replica (rate_limited beyond)")]
MaxEvents = Annotated[str | None, typer.Option(
    "--max-events", metavar="N|none", help="events the tenant may have in the log (quota_exceeded beyond)")]
Storage = Annotated[str | None, typer.Option(
    "--storage", metavar="BYTES|none", help="JetStream storage of the tenant's own account (its audit stream), "
                                            "e.g. 10G; nats-server enforces it")]


def _deployment(auth_dir: Path):  # type: ignore[no-untyped-def]
    from agentledger.client.credentials import data_dir
    from agentledger.handlers.auth.keys import Deployment

    found = data_dir()  # the default is found from here upwards, as the CLI's credentials are
    if auth_dir == DEFAULT_AUTH_DIR and not auth_dir.exists() and found is not None:
        auth_dir = found / "auth"

    if not Deployment.exists(auth_dir):
        typer.echo(f"error: no deployment keys in {auth_dir} (run `agentledger serve` or `agentledger auth init`)",
                   err=True)
        raise typer.Exit(EXIT_REFUSED)
    return Deployment.open(auth_dir)


@auth.command("init")
def init(
    auth_dir: AuthDir = DEFAULT_AUTH_DIR,
    prefix: Annotated[str, typer.Option(envvar="AGENTLEDGER_PREFIX", help="subject prefix the engines serve")] = "ledger",
    stream: Annotated[str, typer.Option(envvar="AGENTLEDGER_STREAM", help="the engines' event stream")] = "LEDGER",
    replicas: Annotated[int, typer.Option(help="replicas of each tenant's audit stream (3 on a cluster)")] = 1,
    resolver_dir: Annotated[Path, typer.Option(help="where nats-server keeps account JWTs")] = Path("/data/jwt"),
    out: Annotated[Path, typer.Option(help="the server config include to write")] = Path("auth.conf"),
) -> None:
    """Make the deployment's keys (once) and write a nats-server config include for operator mode,
    plus engine.creds, effects.creds and admin.creds beside the keys."""
    from agentledger.handlers.auth.keys import Deployment

    deployment = Deployment.open(auth_dir, prefix, stream, replicas)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(deployment.server_config(resolver_dir))
    for role in ("engine", "effects", "admin"):
        deployment.creds_path(role)  # type: ignore[arg-type]
    typer.echo(f"{out}: include it in each nats-server's config; creds for engine, effects and admin in {auth_dir}")


@tenant.command("add")
def add(
    name: Annotated[str, typer.Argument(help="tenant id (tnt_…)")],
    auth_dir: AuthDir = DEFAULT_AUTH_DIR,
    nats_url: Annotated[str, typer.Option("--nats-url", envvar="NATS_URL", help="a server of the deployment")] = DEFAULT_URL,
    commands_per_second: CommandsPerSecond = None,
    queries_per_second: QueriesPerSecond = None,
    max_events: MaxEvents = None,
    storage: Storage = None,
) -> None:
    """Register a tenant: its account goes to the running NATS (no restart) and engines know it at once.
    Quotas given here replace the tenant's (none by default). If it fails, nothing usable is left: run it again."""
    from agentledger.client.errors import LedgerError
    from agentledger.handlers.auth.tenants import add_tenant

    deployment = _deployment(auth_dir)
    limits = (commands_per_second, queries_per_second, max_events, storage)
    quota = None if all(v is None for v in limits) else _quota(deployment.quota(name), *limits)
    try:
        account = asyncio.run(add_tenant(nats_url, deployment, name, connect=tool_connect(), quota=quota))
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    except LedgerError as e:  # NATS refused the connection or the deployment's credentials
        fail(e)
    except Exception as e:  # the server refused a step (the account, the audit stream)
        typer.echo(f"error unavailable: cannot add {name} at {nats_url}: {str(e) or type(e).__name__}", err=True)
        raise typer.Exit(EXIT_RETRYABLE) from None
    typer.echo(f"tenant {name}: account {account}; {_shown(deployment.quota(name))}")


@tenant.command("set")
def set_(
    name: Annotated[str, typer.Argument(help="tenant id (tnt_…)")],
    auth_dir: AuthDir = DEFAULT_AUTH_DIR,
    nats_url: Annotated[str, typer.Option("--nats-url", envvar="NATS_URL", help="a server of the deployment")] = DEFAULT_URL,
    commands_per_second: CommandsPerSecond = None,
    queries_per_second: QueriesPerSecond = None,
    max_events: MaxEvents = None,
    storage: Storage = None,
) -> None:
    """Change a tenant's quotas (only those given; `none` removes one): engines apply them within
    seconds, the storage limit goes to the running NATS at once. No restart."""
    from agentledger.client.errors import LedgerError
    from agentledger.handlers.auth.tenants import set_quota

    deployment = _deployment(auth_dir)
    quota = _quota(deployment.quota(name), commands_per_second, queries_per_second, max_events, storage)
    try:
        asyncio.run(set_quota(nats_url, deployment, name, quota, connect=tool_connect()))
    except (KeyError, ValueError) as e:
        typer.echo(f"error: {e.args[0] if isinstance(e, KeyError) else e}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    except LedgerError as e:  # NATS refused the connection or the deployment's credentials
        fail(e)
    except Exception as e:  # the server refused a step
        typer.echo(f"error unavailable: recorded in {auth_dir}, but not yet on {nats_url}: "
                   f"{str(e) or type(e).__name__}; run it again", err=True)
        raise typer.Exit(EXIT_RETRYABLE) from None
    typer.echo(f"tenant {name}: {_shown(quota)}")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def _duration(text: str | None) -> int | None:
    """`90s`, `30m`, `12h`, `30d`, `8w`, `1y` in seconds."""
    if text is None:
        return None
    match = re.fullmatch(r"([1-9][0-9]{0,9})([smhdwy])", text.strip())
    if match is None:
        raise typer.BadParameter(f"{text!r}: a whole number and a unit, s m h d w or y (e.g. 30d)",
                                 param_hint="'--expires'")
    return int(match.group(1)) * _UNITS[match.group(2)]


@tenant.command("creds")
def creds(
    name: Annotated[str, typer.Argument(help="tenant id (tnt_…)")],
    user: Annotated[str, typer.Option("--user", help="who these credentials are for; recorded as the principal")],
    out: Annotated[Path, typer.Option("--out", help="the .creds file to write")],
    role: Annotated[str, typer.Option("--role", help="member: commands and queries; auditor: queries and the "
                                                     "tenant's events, read-only")] = "member",
    expires: Annotated[str | None, typer.Option("--expires", metavar="DURATION",
                                                help="valid this long (e.g. 12h, 30d, 1y); the server refuses them "
                                                     "after and closes their connections; default: no expiry")] = None,
    auth_dir: AuthDir = DEFAULT_AUTH_DIR,
) -> None:
    """Write a standard NATS .creds file for one user of a tenant (valid at once, no restart), readable
    by its owner only (0600, also when the file was there before)."""
    seconds = _duration(expires)
    deployment = _deployment(auth_dir)
    try:
        issued = deployment.tenant_creds(name, user, role, seconds)  # type: ignore[arg-type]
    except (KeyError, ValueError) as e:
        typer.echo(f"error: {e.args[0]}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    deployment.write(issued, out)
    until = "" if issued.expires is None else \
        f", expires {datetime.fromtimestamp(issued.expires, UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"
    typer.echo(f"{out}: {role} {user} of {name} (user key {issued.public_key}{until})")


@tenant.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="tenant id (tnt_…)")],
    user_key: Annotated[str | None, typer.Option("--user-key", help="the user's public key (U…, as `tenant creds` "
                                                                    "printed it)")] = None,
    creds_file: Annotated[Path | None, typer.Option("--creds", help="or the user's .creds file")] = None,
    auth_dir: AuthDir = DEFAULT_AUTH_DIR,
    nats_url: Annotated[str, typer.Option("--nats-url", envvar="NATS_URL", help="a server of the deployment")] = DEFAULT_URL,
) -> None:
    """Revoke one user's credentials at once: the server closes its connections and refuses its
    .creds from now on (credentials issued to it later are valid). No restart."""
    from agentledger.handlers.auth.keys import user_key_of
    from agentledger.handlers.auth.tenants import revoke_user

    if (user_key is None) == (creds_file is None):
        typer.echo("error: give exactly one of --user-key and --creds", err=True)
        raise typer.Exit(EXIT_USAGE)
    deployment = _deployment(auth_dir)
    try:
        key = user_key if user_key is not None else user_key_of(creds_file.read_text())  # type: ignore[union-attr]
        at = asyncio.run(revoke_user(nats_url, deployment, name, key, connect=tool_connect()))
    except (KeyError, ValueError, OSError) as e:
        typer.echo(f"error: {e.args[0] if isinstance(e, KeyError) else e}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    except Exception as e:  # nats-py raises several unrelated types for "could not connect"
        typer.echo(f"error unavailable: revoked in {auth_dir}, but not yet on {nats_url}: "
                   f"{str(e) or type(e).__name__}; run it again", err=True)
        raise typer.Exit(EXIT_RETRYABLE) from None
    typer.echo(f"tenant {name}: user {key} revoked (credentials issued up to {at}, unix time)")


@tenant.command("list")
def list_(auth_dir: AuthDir = DEFAULT_AUTH_DIR) -> None:
    """The tenants this deployment has keys for."""
    names = _deployment(auth_dir).tenants()
    for name in names:
        typer.echo(name)
    if not names:
        typer.echo("no tenants yet: agentledger tenant add TENANT", err=True)

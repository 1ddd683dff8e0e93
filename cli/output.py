"""Human-readable rendering of replies, events and replayed state.

Everything user-supplied (titles, summaries, reasons) is printed as plain Text, never as
markup, so a `[` in a title cannot restyle or hide output; and every control character in what
is printed (an escape sequence in a title would retitle or clear the terminal) is shown as its
picture (ESC as `␛`), except line breaks and tabs. `--json` output is the reply exactly.
"""

from __future__ import annotations

import shlex
import sys
from datetime import datetime
from typing import Any

import msgspec
from rich.console import Console, ConsoleOptions, ConsoleRenderable, Group, RenderHook, RenderResult
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from agentledger.schemas.common import Actor
from agentledger.schemas.errors import Error
from agentledger.schemas.events import SandboxExecFailed, SandboxExecFinished, SandboxExecRequested, StoredEvent
from agentledger.schemas.queries import (
    QUERY_RESULTS,
    EventsPage,
    QuarantineResult,
    SessionResult,
    SessionView,
    ThreadListResult,
    ThreadResult,
    ThreadView,
    TreeNode,
    TreeResult,
)
from agentledger.schemas.replay import ExecView, ReplayDiff
from agentledger.schemas.replies import CommandReply, QueryReply

# C0 controls and DEL as their Unicode pictures, C1 controls and bidirectional overrides as U+FFFD:
# one character for one, so what rich laid out keeps its place.
_VISIBLE = {c: 0x2400 + c for c in range(0x20) if chr(c) not in "\n\t"} | {0x7F: 0x2421} | \
    dict.fromkeys((*range(0x80, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)), 0xFFFD)


class _Visible:
    def __init__(self, inner: ConsoleRenderable) -> None:
        self.inner = inner

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for segment in console.render(self.inner, options):
            # the text of what is printed; rich's own styling is added after this, from `style`
            yield segment if segment.control else segment._replace(text=segment.text.translate(_VISIBLE))


class _ShowControls(RenderHook):
    def process_renderables(self, renderables: list[ConsoleRenderable]) -> list[ConsoleRenderable]:
        return [_Visible(r) for r in renderables]


out = Console(highlight=False, soft_wrap=True)
err = Console(highlight=False, soft_wrap=True, stderr=True)
for _console in (out, err):
    _console.push_render_hook(_ShowControls())

_STATUS_STYLE = {"finished": "green", "active": "green", "idle": "cyan", "awaiting_hitl": "yellow", "awaiting_merge": "yellow",
                 "locked": "yellow", "failed": "red", "archived": "dim", "open": "green", "deleted": "red"}


# Exit codes: 0 done; 1 refused (an error reply, or bad input caught before sending); 2 bad usage
# (an unknown option or a value of the wrong type); 75 (EX_TEMPFAIL) a retryable error: NATS or
# the engine unreachable, no reply in time, or an error reply marked retryable; repeating the same
# command with the same --command-id is then safe.
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_RETRYABLE = 0, 1, 2, 75


def exit_code(e: Error | None) -> int:
    if e is None:
        return EXIT_OK
    return EXIT_RETRYABLE if e.retryable else EXIT_REFUSED


def raw(data: bytes | str) -> None:
    """Print JSON exactly as given (not through rich, which would wrap or restyle it)."""
    sys.stdout.write((data.decode() if isinstance(data, bytes) else data) + "\n")
    sys.stdout.flush()


def status(value: str) -> Text:
    return Text(value, style=_STATUS_STYLE.get(value, ""))


def actor(a: Actor) -> str:
    return a.id  # the id's prefix already says which kind


class _Fields:
    """Aligned `key  value` lines; plain lines rather than a table, so piped output has no padding."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []

    def add_row(self, key: str, value: str) -> None:
        self.rows.append((key, value))

    def __rich__(self) -> Group:
        width = max((len(k) for k, _ in self.rows), default=0)
        return Group(*(Text.assemble(("  " + k.ljust(width), "bold"), "  ", v) for k, v in self.rows))


# -- replies -------------------------------------------------------------------------------------
def error(e: Error) -> None:
    code = type(e).__struct_config__.tag
    err.print(Text.assemble(("error ", "bold red"), (f"{code}", "bold red"), ": ", e.message,
                            " (retryable)" if e.retryable else ""))
    details = msgspec.to_builtins(getattr(e, "details", None)) or {}
    for key, value in details.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            err.print(Text(f"  {key}:"))
            for item in value:
                err.print(Text("    " + "  ".join(f"{k}={v}" for k, v in item.items())))
        else:
            err.print(Text(f"  {key}: {_compact(value)}"))


def command_reply(reply: CommandReply) -> None:
    if not reply.ok:
        assert reply.error is not None
        return error(reply.error)
    result = msgspec.to_builtins(reply.result) or {}
    kinds = [e.type for e in reply.events or []]
    line = Text.assemble(("ok", "bold green"), f" position {reply.position}")
    if kinds:
        line.append(" " + ", ".join(kinds))
    ids = [k for k in ("session_id", "thread_id", "project_id") if k in result] + [k for k in result if k.endswith("_id")]
    if ids:
        line.append(f": {ids[0][:-3]} {result.pop(ids[0])}")
    if "status" in result:
        line.append(" -> ").append_text(status(result.pop("status")))
    out.print(line)
    if kinds == ["sandbox.exec_requested"]:
        out.print(exec_outcome(reply.position, result))
    else:
        for key, value in result.items():
            out.print(Text(f"  {key}: {_compact(value)}"))
    if reply.command_id:
        out.print(Text(f"  command_id: {reply.command_id}", style="dim"))


def _stream(name: str, o: dict[str, Any]) -> Group:
    """One output stream of an exec: its kept text, indented (the program's text, shown as text)."""
    size = f"{o['size']} bytes" if o["kept"] >= o["size"] else f"first {o['kept']} of {o['size']} bytes"
    head = Text(f"  {name} ({size}" + (f", sha256 {o['sha256']})" if o["sha256"] else ")"), style="bold")
    lines = o["text"].splitlines() or ([] if not o["text"] else [""])
    return Group(head, *(Text("    " + line) for line in lines))


def exec_outcome(position: int | None, result: dict[str, Any]) -> Group:
    """An exec's outcome as a person reads it: exit code and time, then what it wrote."""
    outcome, error = result.get("outcome"), result.get("error")
    parts: list[Any] = []
    if outcome is not None:
        code = outcome["exit_code"]
        how = ("killed at its timeout" if outcome["timed_out"] else f"exit code {code}") + \
            (", killed: its sandbox was destroyed" if outcome["killed"] else "")
        hit = f", reached its {' and '.join(outcome['limits_hit'])} limit" if outcome["limits_hit"] else ""
        parts.append(Text(f"  {how}{hit}, after {outcome['duration_ms']} ms"))
        parts += [_stream("stdout", outcome["stdout"]), _stream("stderr", outcome["stderr"])]
    elif error is not None:
        parts.append(Text.assemble(("  error: ", "red"), error))
    else:
        parts.append(Text(f"  still running: its outcome will be a sandbox.exec_finished or sandbox.exec_failed event "
                          f"with request_position {position} (agentledger events tail), or repeat this command "
                          "with the same --command-id", style="dim"))
    if result.get("outcome_position") is not None:
        parts.append(Text(f"  outcome at position {result['outcome_position']}", style="dim"))
    return Group(*parts)


def query_reply(name: str, reply: QueryReply) -> None:
    if not reply.ok:
        assert reply.error is not None
        return error(reply.error)
    kind = QUERY_RESULTS.get(name)
    match msgspec.convert(reply.result, kind) if kind else reply.result:
        case ThreadResult(thread=t):
            out.print(thread(t))
        case ThreadListResult(threads=rows, next_after=next_after, more=more):
            table = Table("thread", "title", "status", "sessions", "position", box=None)
            for r in rows:
                table.add_row(r.thread_id, Text(r.title), status(r.status), str(r.session_count), str(r.position))
            out.print(table if rows else Text("no threads" + (" in this page" if more else "")))
            if more:
                out.print(Text(f"more: --after {next_after}", style="dim"))
        case SessionResult(session=s):
            out.print(session(s))
        case TreeResult(tree=node):
            out.print(tree(node))
        case EventsPage(events=events, next_after=next_after):
            for ev in events:
                out.print(event_line(ev))
            out.print(Text(f"next_after: {next_after}", style="dim"))
        case QuarantineResult(count=count, entries=entries):
            table = Table("position", "subject", "tenant", "reason", box=None)
            for q in entries:
                table.add_row(str(q.position), q.subject, q.tenant_id or "-", Text(q.reason))
            out.print(table if entries else Text("nothing quarantined"))
            out.print(Text(f"{count} quarantined since this engine started", style="dim"))
        case other:
            out.print(generic(other))
    out.print(Text(f"read model at position {reply.position}", style="dim"))


# -- views ---------------------------------------------------------------------------------------
def _compact(value: Any) -> str:
    """One value on one line: lists of strings joined, structures as `key=value` pairs or JSON."""
    value = msgspec.to_builtins(value)
    if value is None:
        return "-"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value) or "-"
    if isinstance(value, dict) and all(not isinstance(v, dict | list) for v in value.values()):
        return " ".join(f"{k}={v}" for k, v in value.items() if v is not None)
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


def generic(result: Any) -> Any:
    """A result this CLI has no view for: `{"thing": {...}}` as a header and fields, else JSON."""
    result = msgspec.to_builtins(result)
    if isinstance(result, dict) and len(result) == 1:
        (kind, body), = result.items()
        if isinstance(body, dict):
            head = Text.assemble((f"{kind} {body.get(f'{kind}_id', '')}".rstrip(), "bold"))
            if isinstance(body.get("status"), str):
                head.append(" ").append_text(status(body["status"]))
            fields = _Fields()
            for key, value in body.items():
                if key not in (f"{kind}_id", "status"):
                    fields.add_row(key, _compact(value))
            return Group(head, fields) if fields.rows else head
    return Text(msgspec.json.encode(result).decode())


def thread_header(t: ThreadView) -> Group:
    head = Text.assemble(("thread ", "bold"), (t.thread_id, "bold"), " ")
    head.append_text(status(t.status))
    if t.title:
        head.append(f'  "{t.title}"')
    grid = _Fields()
    grid.add_row("project", t.project_id)
    grid.add_row("caps", f"depth {t.max_delegation_depth}, width {t.max_delegation_width}")
    grid.add_row("blocking", f"{t.blocking_sessions} session(s)")
    if t.forked_from is not None:
        grid.add_row("forked from", f"{t.forked_from.thread_id} at position {t.forked_from.position}")
    if t.held_sandboxes:
        grid.add_row("sandboxes held", ", ".join(f"{h.sandbox_id} by {h.session_id}" for h in t.held_sandboxes))
    grid.add_row("positions", f"created {t.created_position}, last {t.position}")
    return Group(head, grid)


def thread(t: ThreadView) -> Group:
    sessions = Table("session", "status", box=None)
    for ref in t.sessions:
        sessions.add_row(ref.session_id, status(ref.status))
    return Group(thread_header(t), sessions if t.sessions else Text("no sessions"))


def replay(t: ThreadView, sessions: list[SessionView], roots: list[TreeNode], at: int | None,
           execs: list[ExecView] | None = None) -> Group:
    """A thread rebuilt from the log: its header, every session, the delegation tree, and the
    execs in its sandboxes."""
    asked = "latest" if at is None else f"position {at}"
    title = Text(f"replayed from the log up to {asked}", style="dim")
    table = Table("session", "status", "owner", "depth", "parent", "sandbox", "summary", box=None)
    held = {h.sandbox_id for h in t.held_sandboxes}
    for s in sessions:
        summary = Text(f"{s.summary.outcome}: {s.summary.text}") if s.summary else Text("-")
        table.add_row(s.session_id, status(s.status), actor(s.owner), str(s.depth), s.parent_session_id or "-",
                      _sandbox_cell(s, held), summary)
    delegation = Tree(Text("delegation", style="bold"))
    for root in roots:
        tree(root, delegation)
    parts: list[Any] = [title, thread_header(t), table if sessions else Text("no sessions"), delegation]
    if execs:
        parts.append(exec_table(execs))
    return Group(*parts)


def exec_table(execs: list[ExecView]) -> Table:
    """Execs in a thread's sandboxes: who ran what, and what came of it."""
    table = Table("position", "sandbox", "session", "argv", "outcome", "stdout", box=None, title="execs",
                  title_justify="left", title_style="bold")
    for x in execs:
        if x.outcome is not None:
            o = x.outcome
            result = "timed out" if o.timed_out else f"exit {o.exit_code}"
            result += ", killed" if o.killed else ""
            shown = o.stdout.text.strip().splitlines()
            stdout = (shown[0][:60] + (" …" if len(shown) > 1 or len(shown[0]) > 60 else "")) if shown else "-"
        else:
            result, stdout = (f"failed: {x.error}" if x.error is not None else "running"), "-"
        table.add_row(str(x.request_position), x.sandbox_id, x.session_id, Text(shlex.join(x.argv)),
                      Text(result, style="red" if x.status == "failed" else ""), Text(stdout))
    return table


def _sandbox_cell(s: SessionView, held: set[str]) -> str:
    b = s.sandbox
    if b is None:
        return "-"
    if not b.owned:
        return f"{b.sandbox_id} (inherited)"
    return f"{b.sandbox_id} ({b.mode}, {b.shutdown}, {'held' if b.sandbox_id in held else 'released'})"


def _budget(s: SessionView) -> str:
    b = s.budget
    used = f"used {b.used}" + (f" + {b.used_by_children} by children" if b.used_by_children else "")
    if b.limit is None:
        return f"unlimited, {used}"
    return f"{b.remaining} of {b.limit} left ({used}, {b.reserved_for_children} reserved for children)"


def session(s: SessionView) -> Group:
    head = Text.assemble(("session ", "bold"), (s.session_id, "bold"), " ")
    head.append_text(status(s.status))
    grid = _Fields()
    grid.add_row("thread", f"{s.thread_id} (project {s.project_id})")
    grid.add_row("owner", f"{actor(s.owner)} (version {s.owner_version})")
    if s.previous_actors:
        grid.add_row("previous", ", ".join(actor(a) for a in s.previous_actors))
    grid.add_row("depth", str(s.depth))
    if s.parent_session_id:
        grid.add_row("parent", f"{s.parent_session_id} via {s.edge_kind} {s.edge_id} ({s.edge_status}, {s.failure_mode})")
    grid.add_row("root", s.root_session_id)
    grid.add_row("children", f"{s.open_children} open")
    grid.add_row("budget", _budget(s))
    sandbox = s.sandbox
    if sandbox is not None:
        grid.add_row("sandbox", f"{sandbox.sandbox_id} ({sandbox.mode}{', owned' if sandbox.owned else ''})")
    if s.summary is not None:
        grid.add_row("summary", f"{s.summary_id} {s.summary.outcome}: {s.summary.text}")
        if s.summary.deliverables:
            grid.add_row("deliverables", ", ".join(s.summary.deliverables))
    for m in s.merge_result or []:
        grid.add_row("merged", f"{m.session_id} {actor(m.actor)} {m.outcome} {m.summary_id or ''}".rstrip())
    grid.add_row("positions", f"created {s.created_position}, thread at {s.position}")
    return Group(head, grid)


def _node_label(n: TreeNode) -> Text:
    label = Text.assemble((n.session_id, "bold"), " ")
    label.append_text(status(n.status))
    label.append(f"  {actor(n.owner)}  depth {n.depth}")
    if n.edge_kind:
        label.append(f"  [{n.edge_kind} {n.edge_status}]", style="dim")
    if n.summary is not None:
        label.append(f"  {n.summary.outcome}: ").append(n.summary.text)
    return label


def tree(node: TreeNode, into: Tree | None = None) -> Tree:
    branch = into.add(_node_label(node)) if into is not None else Tree(_node_label(node))
    for child in node.children:
        tree(child, branch)
    return branch


# -- events --------------------------------------------------------------------------------------
def _when(at: str) -> str:
    try:
        return datetime.fromisoformat(at).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    except ValueError:
        return at


def entity_ids(data: Any) -> str:
    """`key=id` for every id the event names, recipients included."""
    fields = msgspec.to_builtins(data)
    pairs = [f"{k[:-3]}={v}" for k, v in fields.items() if k.endswith("_id") and isinstance(v, str)]
    recipients = fields.get("recipients") or ([fields["recipient"]] if "recipient" in fields else [])
    pairs += [f"to={r['session_id']}({r.get('actor', {}).get('id', '?')})"
              for r in recipients if isinstance(r, dict) and "session_id" in r]
    return " ".join(pairs)


def _exec_detail(data: Any) -> str:
    """What an exec event adds to its line: the program, or what came of it."""
    match data:
        case SandboxExecRequested(argv=argv):
            return f" argv={shlex.join(argv)[:200]}"
        case SandboxExecFinished(request_position=at, outcome=o):
            return f" of={at} " + ("timed out" if o.timed_out else f"exit={o.exit_code}") + (" killed" if o.killed else "")
        case SandboxExecFailed(request_position=at, error=error):
            return f" of={at} error={error[:200]}"
    return ""


def event_line(ev: StoredEvent) -> Text:
    return Text.assemble((f"{ev.position:>6}", "bold"), f"  {_when(ev.at)}  ", (f"{ev.type:<24}", "cyan"),
                         f" {entity_ids(ev.data)}", _exec_detail(ev.data), (f"  by {actor(ev.actor)}", "dim"))


def replay_diff(d: ReplayDiff) -> Group:
    """What changed in a thread between two positions: fields, sessions and sandboxes."""
    parts: list[Any] = [Text.assemble(("thread ", "bold"), (d.thread_id, "bold"),
                                      f" from position {d.from_position} to {d.to_position}: "
                                      f"{d.events_between} event(s) of its history")]
    for c in d.thread_changes:
        parts.append(Text(f"  thread {c.field}: {c.before} -> {c.after}"))
    for s in d.sessions_added:
        parts.append(Text.assemble(("  + ", "green"), f"{s.session_id} ", status(s.status),
                                   f"  {actor(s.owner)}  depth {s.depth}"
                                   + (f"  parent {s.parent_session_id}" if s.parent_session_id else "")))
    for sid in d.sessions_removed:
        parts.append(Text.assemble(("  - ", "red"), sid))
    for sc in d.session_changes:
        for c in sc.changes:
            parts.append(Text(f"  ~ {sc.session_id} {c.field}: {c.before} -> {c.after}"))
    for h in d.sandboxes_acquired:
        parts.append(Text(f"  + sandbox {h.sandbox_id} held by {h.session_id}"))
    for h in d.sandboxes_released:
        parts.append(Text(f"  - sandbox {h.sandbox_id} released by {h.session_id}"))
    if len(parts) == 1:
        parts.append(Text("  no change", style="dim"))
    return Group(*parts)

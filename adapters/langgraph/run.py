"""One graph run on the ledger: its root session, a session per subgraph task, and the commands
that move them, each carrying the link (`lgcp:<checkpoint_id>`) to the checkpoint it was decided
at. `LedgerGraph` begins and ends runs; `LedgerSaver` tells a run when LangGraph enters a subgraph
and when a task that ran one ends.

A run is what LangGraph starts with a fresh input and continues with `Command(...)` or `None`
until the graph ends or fails: its root session is started once, waits for input at each
interrupt, and completes or fails at the end. Its id rides in the run's config
(`configurable["agentledger_session"]`), so LangGraph writes it into every checkpoint's metadata,
which is how a run resumed in another process finds its sessions."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langgraph.checkpoint.serde.types import ERROR, INTERRUPT, RESUME, SCHEDULED
from langgraph.types import Command, StateSnapshot

from agentledger.adapters.langgraph import interrupts, namespaces
from agentledger.adapters.langgraph.links import link_to
from agentledger.client import AlreadyExists, IllegalTransition, Ledger, NotFound, Summary
from agentledger.schemas.common import RUNNING_STATUSES, Actor, FailureMode, SessionStatus
from agentledger.schemas.ids import id_pattern
from agentledger.schemas.queries import SessionView, TreeNode

RUN_KEY = "agentledger_session"
"""The config key (and so the checkpoint metadata key) that holds the run's root session id."""
CONTROL = frozenset({ERROR, INTERRUPT, RESUME, SCHEDULED, "__error_source_node__"})
"""Writes that say what happened to a task rather than what it produced: LangGraph counts a task
finished exactly when it wrote something else (at least its `__no_writes__` marker)."""
MAX_REASON = 2000  # the contract's limit on a fail or cancel reason
_SESSION_ID = re.compile(id_pattern("ses_"))
_ENDED_ALREADY = contextlib.suppress(IllegalTransition)
"""Ending a session that has ended already (a fail_fast child took it down, another process ended
it) changes nothing."""


class RunMismatch(RuntimeError):
    """A session the run derives (from the checkpoint metadata and the namespace) is not this
    thread's, or not under this run's root: the bucket or the ledger holds something this adapter
    did not write there. Nothing is sent for it."""


def link(checkpoint_id: str | None) -> str | None:
    """The causation link to a checkpoint, or None when there is none (or its id makes no link)."""
    if not checkpoint_id:
        return None
    try:
        return link_to(checkpoint_id)
    except ValueError:
        return None


def reason(error: BaseException) -> str:
    return interrupts.bounded(f"{type(error).__name__}: {error}", MAX_REASON)


def head(snapshot: StateSnapshot) -> str | None:
    """The checkpoint a state snapshot was read from."""
    checkpoint_id = snapshot.config.get("configurable", {}).get("checkpoint_id")
    return None if checkpoint_id is None else str(checkpoint_id)


def _below(node: TreeNode) -> Iterator[TreeNode]:
    """The descendants of `node`, deepest first."""
    for child in node.children:
        yield from _below(child)
        yield child


class LedgerRun:
    """The sessions of one run. `children` maps each subgraph task's key (`namespaces.key`) to its
    session; `status` is each session's status as this run last saw or made it."""

    def __init__(self, ledger: Ledger, thread_id: str, root: str, agent: Actor, failure_mode: FailureMode) -> None:
        self.ledger, self.thread_id, self.root, self.agent, self.failure_mode = ledger, thread_id, root, agent, failure_mode
        self.children: dict[str, str] = {}
        self.status: dict[str, SessionStatus] = {root: "active"}
        self._ended: set[str] = set()
        self._pending: set[asyncio.Future[None]] = set()

    # -- beginning ------------------------------------------------------------------------------
    @classmethod
    async def begin(cls, ledger: Ledger, thread_id: str, input: Any, before: StateSnapshot, agent: Actor,
                    failure_mode: FailureMode) -> LedgerRun:
        """Continue the run the thread's head checkpoint belongs to (a `Command` or `None` input while
        its root is still running), giving input to the sessions a resume answers; otherwise start a
        new run: a fresh input supersedes an unfinished run (its sessions are cancelled), then a root
        session is created and started. On an archived thread that raises `ThreadClosed` before
        anything else is sent or run."""
        previous = await cls._previous(ledger, thread_id, before)
        continuing = input is None or isinstance(input, Command)
        if previous is not None and previous.status in RUNNING_STATUSES:
            run = cls(ledger, thread_id, previous.session_id, agent, failure_mode)
            run.status[run.root] = previous.status
            if continuing:
                await run._resume(input, before)
                return run
            await run.stop("superseded by a new input", failed=False, checkpoint_id=head(before))
        start = link(head(before))
        created = await ledger.session.create(thread_id=thread_id, owner=agent, actor=agent, causation_id=start)
        await ledger.session.start(session_id=created.session_id, actor=agent, causation_id=start)
        return cls(ledger, thread_id, created.session_id, agent, failure_mode)

    @staticmethod
    async def _previous(ledger: Ledger, thread_id: str, before: StateSnapshot) -> SessionView | None:
        """The root session the head checkpoint names, if it is one of this thread's root sessions:
        the metadata is bucket data any member can write, so nothing else is trusted."""
        session_id = (before.metadata or {}).get(RUN_KEY)
        if not isinstance(session_id, str) or not _SESSION_ID.match(session_id):
            return None
        try:
            view = (await ledger.session.get(session_id=session_id)).session
        except NotFound:
            return None
        if view.thread_id != thread_id or view.parent_session_id is not None:
            return None
        return view

    async def _resume(self, input: Any, before: StateSnapshot) -> None:
        """`session.provide_input` for each session whose question the input answers: the interrupts
        a `Command(resume=...)` names, or the root paused at a breakpoint, continued with `None`."""
        asked = interrupts.origins(before)
        if isinstance(input, Command) and input.resume is not None:
            answered = interrupts.answered(input.resume, (i.id for a in asked for i in a.interrupts))
            for a in asked:
                if answered & {i.id for i in a.interrupts}:
                    await self._provide(self.session_of(a.ns), a.checkpoint_id)
        elif input is None and not asked and before.next:
            await self._provide(self.root, head(before))

    async def _provide(self, session_id: str, checkpoint_id: str | None) -> None:
        view = await self._get(session_id)
        if view is None or view.status != "awaiting_hitl":
            return
        result = await self.ledger.session.provide_input(session_id=session_id, causation_id=link(checkpoint_id))
        self.status[session_id] = result.status

    # -- subgraph tasks -------------------------------------------------------------------------
    def session_of(self, ns: str) -> str:
        key = namespaces.key(ns)
        if not key:
            return self.root
        return self.children.get(key) or namespaces.child_session_id(self.root, key)

    async def enter(self, ns: str, checkpoint_map: dict[str, str]) -> None:
        """LangGraph starts (or resumes) the subgraph at `ns`: its task's session is spawned under the
        enclosing one, unless it is running already. A refusal (a cap, an archived thread) raises
        here, before the subgraph reads its first checkpoint, so none of its nodes runs."""
        key = namespaces.key(ns)
        if not key or key in self.children:
            return
        await self.settle()  # a finished sibling's ending first: its width slot is free before this spawn
        if key in self.children:
            return
        up = namespaces.parent(key)
        while up and up not in self.children:  # an enclosing subgraph that saves no checkpoints
            up = namespaces.parent(up)
        parent = self.children[up] if up else self.root
        session_id = namespaces.child_session_id(self.root, key)
        view = await self._get(session_id)
        if view is None:
            await self._spawn(key, parent, session_id, namespaces.parent_checkpoint(ns, checkpoint_map))
        elif view.status in RUNNING_STATUSES:
            self.status[session_id] = view.status
        else:  # the task runs again after its session ended (a retried step): a session of its own
            session_id = await self._spawn(key, parent, None, namespaces.parent_checkpoint(ns, checkpoint_map))
        self.children[key] = session_id

    async def _spawn(self, key: str, parent: str, session_id: str | None, checkpoint_id: str | None) -> str:
        node, _ = namespaces.task(key)
        try:
            spawned = await self.ledger.session.spawn(
                parent_session_id=parent, session_id=session_id, thread_id=self.thread_id,
                agent=namespaces.agent_id(node, self.agent.id), failure_mode=self.failure_mode, actor=self.agent,
                causation_id=link(checkpoint_id))
        except AlreadyExists:  # another process of the same run spawned it first
            if session_id is None or (view := await self._get(session_id)) is None:
                raise
            self.status[session_id] = view.status
            return session_id
        self.status[spawned.session_id] = "active"
        return str(spawned.session_id)

    def task_wrote(self, ns: str, task_id: str, writes: Sequence[tuple[str, Any]],
                   checkpoint_id: str | None) -> asyncio.Future[None] | None:
        """A task of the graph at `ns` recorded its writes: the sessions of the subgraphs it ran end
        with it, failed when it wrote an error, completed when it wrote an output. Returns the
        commands in flight, or None when the task ran no subgraph or only paused."""
        under = namespaces.key(ns)
        mine = [k for k in self.children
                if k not in self._ended and namespaces.parent(k) == under and namespaces.task(k)[1] == task_id]
        channels = {channel for channel, _ in writes}
        error = next((v for c, v in writes if c == ERROR), None)
        if not mine or not (ERROR in channels or channels - CONTROL):
            return None
        self._ended.update(mine)
        why = reason(error) if isinstance(error, BaseException) else None if ERROR not in channels else str(error)
        future = asyncio.ensure_future(self._end([self.children[k] for k in mine], why, checkpoint_id))
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        return future

    async def _end(self, sessions: list[str], failure: str | None, checkpoint_id: str | None) -> None:
        for session_id in sessions:
            if failure is None:
                node = next((namespaces.task(k)[0] for k, s in self.children.items() if s == session_id), "")
                await self._complete(session_id, f"{node} finished", checkpoint_id)
            else:
                await self._fail(session_id, interrupts.bounded(failure, MAX_REASON), checkpoint_id)

    async def settle(self) -> None:
        """Wait for the endings in flight (their errors are raised where LangGraph awaits them)."""
        while self._pending:
            await asyncio.wait(list(self._pending))

    # -- ending ---------------------------------------------------------------------------------
    async def finish(self, after: StateSnapshot, summary: Callable[[Any], str]) -> None:
        """The graph returned. Pending interrupts: each asking session requests input with the
        interrupts' values as its prompt (and the run waits). Paused at a breakpoint: the root asks.
        Otherwise the run is over: what still runs under the root completes, then the root."""
        asked = interrupts.origins(after)
        if asked:
            for a in asked:
                await self._ask(self.session_of(a.ns), interrupts.prompt(a.interrupts), a.checkpoint_id)
            return
        if after.next:
            await self._ask(self.root, interrupts.bounded(f"paused before {', '.join(after.next)}",
                                                          interrupts.MAX_PROMPT), head(after))
            return
        tree = (await self.ledger.session.tree(session_id=self.root)).tree
        for node in _below(tree):
            if node.status in RUNNING_STATUSES:
                await self._complete(node.session_id, "ended with its run", head(after))
        await self._complete(self.root, summary(after.values), head(after))

    async def stop(self, why: str, *, failed: bool, checkpoint_id: str | None = None) -> None:
        """The run ended without finishing: every session still running under the root is cancelled,
        then the root fails (an error) or is cancelled (stopped by its caller, or superseded)."""
        tree = (await self.ledger.session.tree(session_id=self.root)).tree
        for node in _below(tree):
            if node.status in RUNNING_STATUSES:
                await self._cancel(node.session_id, f"the run stopped: {why}", checkpoint_id)
        if tree.status in RUNNING_STATUSES:
            if failed:
                await self._fail(self.root, why, checkpoint_id)
            else:
                await self._cancel(self.root, why, checkpoint_id)

    # -- commands -------------------------------------------------------------------------------
    async def _get(self, session_id: str) -> SessionView | None:
        """The session, if it exists; RunMismatch when it is not this run's."""
        try:
            view = (await self.ledger.session.get(session_id=session_id)).session
        except NotFound:
            return None
        if view.thread_id != self.thread_id or view.root_session_id != self.root:
            raise RunMismatch(f"session {session_id} is not one of run {self.root} in thread {self.thread_id}")
        return view

    async def _ask(self, session_id: str, prompt: str, checkpoint_id: str | None) -> None:
        """A session asks, unless it waits for an answer already (a question this run left open)."""
        if self.status.get(session_id) == "awaiting_hitl":
            return
        try:
            result = await self.ledger.session.request_input(session_id=session_id, prompt=prompt, actor=self.agent,
                                                             causation_id=link(checkpoint_id))
        except IllegalTransition as e:
            if e.details.from_ != "awaiting_hitl":
                raise
            self.status[session_id] = "awaiting_hitl"
            return
        self.status[session_id] = result.status

    async def _complete(self, session_id: str, text: str, checkpoint_id: str | None) -> None:
        summary = Summary(outcome="succeeded", text=interrupts.bounded(text, interrupts.MAX_PROMPT))
        with _ENDED_ALREADY:
            result = await self.ledger.session.complete(session_id=session_id, summary=summary, actor=self.agent,
                                                        causation_id=link(checkpoint_id))
            self.status[session_id] = result.status

    async def _fail(self, session_id: str, why: str, checkpoint_id: str | None) -> None:
        with _ENDED_ALREADY:
            result = await self.ledger.session.fail(session_id=session_id, reason=interrupts.bounded(why, MAX_REASON),
                                                    actor=self.agent, causation_id=link(checkpoint_id))
            self.status[session_id] = result.status

    async def _cancel(self, session_id: str, why: str, checkpoint_id: str | None) -> None:
        with _ENDED_ALREADY:
            result = await self.ledger.session.cancel(session_id=session_id, reason=interrupts.bounded(why, MAX_REASON),
                                                      actor=self.agent, causation_id=link(checkpoint_id))
            self.status[session_id] = result.status

"""A run of the OpenAI Agents SDK recorded and governed by the ledger.

`LedgerRun.open(...)` creates or joins the run's thread and its root session; `run(agent, input)`
runs the SDK's `Runner.run` with the ledger's hooks (`hooks.LedgerHooks`) and records how it ends: a
final output completes the agent's session, an error fails it (a cancellation cancels it) and the
error is raised, the ledger's own typed error when a refusal stopped the run. A run that stops for
tool approvals is paused in the ledger (`session.request_input`) and in the tenant's bucket
(`store.Pause`); `resume(agent)`, in this process or any other, waits for `session.input_provided`
and goes on with the approver's decision (`approvals`)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any, Literal

from agents import Agent, RunHooks, Runner, RunResult, RunState

from agentledger.adapters.openai_agents import approvals, seats, words
from agentledger.adapters.openai_agents.actors import actor_id
from agentledger.adapters.openai_agents.errors import AdapterError, CascadedFailure, NotAwaitingInput, NothingToResume
from agentledger.adapters.openai_agents.hooks import LedgerHooks
from agentledger.adapters.openai_agents.steps import Steps
from agentledger.adapters.openai_agents.store import Decision, Pause, PendingCall, RunStore, SeatRecord
from agentledger.adapters.openai_agents.tools import Refusal, SandboxChoice
from agentledger.client import Ledger, LedgerError, NotFound, SandboxSpec

ENDED = ("session.completed", "session.failed", "session.cancelled", "session.archived")
DECISION_READS = 10  # a decision written just before the input may reach a bucket follower a moment later
DECISION_WAIT = 0.2


def _seat(record: SeatRecord) -> seats.Seat:
    return seats.Seat(session_id=record.session_id, actor=record.actor, owner_version=record.owner_version,
                      status=record.status, usage=record.usage, delegated=record.delegated)


def _record(seat: seats.Seat) -> SeatRecord:
    return SeatRecord(session_id=seat.session_id, actor=seat.actor, owner_version=seat.owner_version,
                      status=seat.status, usage=seat.usage, delegated=seat.delegated)


def _typed(error: BaseException) -> BaseException:
    """The ledger's (or this adapter's) error behind one the SDK wrapped (a tool's error comes back as
    the SDK's `UserError`), else the error itself."""
    cause: BaseException | None = error
    for _ in range(16):
        if cause is None:
            break
        if isinstance(cause, LedgerError | AdapterError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return error


class LedgerRun:
    """One conversation of agents on one ledger thread, rooted in one session."""

    def __init__(self, ledger: Ledger, store: RunStore, thread_id: str, root: seats.Seat, run_id: str) -> None:
        self.ledger, self.store, self.thread_id, self.root = ledger, store, thread_id, root
        self.steps = Steps(ledger, run_id)
        self.refusals: list[Refusal] = []  # spawns the ledger refused, reported to the model as the tool's output

    @classmethod
    async def open(cls, ledger: Ledger, *, thread_id: str, agent: Agent[Any] | str | None = None,
                   project_id: str | None = None, session_id: str | None = None, budget: int | None = None,
                   sandbox: SandboxSpec | None = None, title: str = "") -> LedgerRun:
        """Join `thread_id` (created in `project_id` when it does not exist) and its root session
        `session_id` when it exists; else create the root session, owned by `agent`, with `budget` and
        `sandbox` (its mode and shutdown policy)."""
        try:
            await ledger.thread.get(thread_id=thread_id)
        except NotFound:
            if project_id is None:
                raise
            await ledger.thread.create(project_id=project_id, thread_id=thread_id, title=title)
        root = await cls._join(ledger, thread_id, session_id) if session_id is not None else None
        if root is None:
            if agent is None:
                raise ValueError("a new root session needs its agent (its owner)")
            owner = actor_id(agent if isinstance(agent, str) else agent.name)
            created = await ledger.session.create(session_id=session_id, thread_id=thread_id, owner=owner, budget=budget,
                                                  sandbox=sandbox, actor=owner)
            root = seats.Seat(session_id=created.session_id, actor=owner)
        return cls(ledger, await RunStore.open(ledger.nc), thread_id, root, f"oa-run-{uuid.uuid4().hex[:16]}")

    @staticmethod
    async def _join(ledger: Ledger, thread_id: str, session_id: str) -> seats.Seat | None:
        try:
            view = (await ledger.session.get(session_id=session_id)).session
        except NotFound:
            return None
        if view.thread_id != thread_id:
            raise ValueError(f"session {session_id} is in thread {view.thread_id}, not {thread_id}")
        status: seats.Status = view.status if view.status in ("idle", "active", "awaiting_hitl", "failed") else "ended"
        return seats.Seat(session_id=session_id, actor=view.owner.id, owner_version=view.owner_version, status=status,
                          delegated=view.parent_session_id is not None)

    @property
    def session_id(self) -> str:
        """The root session."""
        return self.root.session_id

    async def run(self, agent: Agent[Any], input: Any, *, hooks: RunHooks[Any] | None = None,
                  **runner: Any) -> RunResult:
        """`Runner.run(agent, input, **runner)` in the root session. Check `result.interruptions`: a
        run stopped for approvals is paused until `resume`."""
        if self.root.status not in ("idle", "active"):
            hint = ": resume() it" if self.root.status == "awaiting_hitl" else ""
            raise AdapterError(f"the root session {self.session_id} is {self.root.status}{hint}")
        return await self._drive(seats.Frame(self, self.root), agent, input, hooks, runner)

    async def resume(self, agent: Agent[Any], *, hooks: RunHooks[Any] | None = None, timeout: float | None = None,
                     **runner: Any) -> RunResult:
        """Wait (at most `timeout` seconds; None: as long as it takes) for the paused session's input,
        then go on from the stored RunState with the approver's decision. `agent` is the run's
        starting agent, built as it was (the RunState holds no Python code)."""
        found = await self.store.pause(self.session_id)
        if found is None:
            raise NothingToResume(f"run {self.session_id} has no pause recorded")
        pause, revision = found
        root = _seat(pause.root)
        seat = root if pause.seat.session_id == root.session_id else _seat(pause.seat)
        await asyncio.wait_for(self._input_provided(seat.session_id), timeout)
        seat.status = "active"
        decision = await self._decision(seat.session_id, pause)
        if not await self.store.take_pause(self.session_id, revision):
            raise NothingToResume(f"run {self.session_id} was resumed by another process")
        await self.store.drop_decision(seat.session_id)
        state = await RunState.from_string(agent, pause.state)
        by_id = {v.call_id: v for v in approvals.verdicts(pause.calls, decision)}
        for item in state.get_interruptions():
            verdict = by_id.get(item.call_id or "")
            if verdict is not None and verdict.approved:
                state.approve(item)
            else:
                state.reject(item, rejection_message=verdict.message if verdict else approvals.NO_DECISION)
        self.root, self.steps = root, Steps(self.ledger, pause.run_id)
        return await self._drive(seats.Frame(self, seat), agent, state, hooks, runner)

    async def _drive(self, frame: seats.Frame, agent: Agent[Any], input: Any, hooks: RunHooks[Any] | None,
                     runner: dict[str, Any]) -> RunResult:
        token = seats.enter(frame)
        try:
            result = await Runner.run(agent, input, hooks=LedgerHooks(hooks), **runner)
        except BaseException as error:
            try:
                await asyncio.shield(self.steps.end(frame.seat, error))
            except LedgerError as unrecorded:
                error.add_note(f"the ledger did not record this failure: {unrecorded}")
            typed = _typed(error)
            if typed is error:
                raise
            raise typed from None
        finally:
            seats.leave(token)
        if result.interruptions:
            await self._pause(frame.seat, result)
        return result

    async def _pause(self, seat: seats.Seat, result: RunResult) -> None:
        calls = [PendingCall(call_id=item.call_id or "", tool=item.tool_name or "", arguments=item.arguments or "",
                             agent=item.agent.name) for item in result.interruptions]
        waiting = seats.Seat(**{**vars(seat), "status": "awaiting_hitl"})
        pause = Pause(pause_id=approvals.new_pause_id(), thread_id=self.thread_id, run_id=self.steps.run_id,
                      root=_record(waiting if seat is self.root else self.root), seat=_record(waiting), calls=calls,
                      state=result.to_state().to_string())
        await self.store.put_pause(self.session_id, pause)  # first: whoever sees the request finds the pause
        await self.steps.request_input(seat, words.approval_prompt([(c.call_id, c.tool, c.arguments) for c in calls]))

    async def _input_provided(self, session_id: str) -> None:
        view = (await self.ledger.session.get(session_id=session_id)).session
        if view.status == "active":
            return
        if view.status != "awaiting_hitl":
            raise NotAwaitingInput(session_id, view.status)
        async with contextlib.aclosing(self.ledger.events(view.thread_id, after=view.position)) as events:
            async for event in events:
                if getattr(event.data, "session_id", None) != session_id:
                    continue
                if event.type == "session.input_provided":
                    return
                if event.type in ENDED:
                    raise NotAwaitingInput(session_id, event.type.removeprefix("session."))

    async def _decision(self, session_id: str, pause: Pause) -> Decision | None:
        for attempt in range(DECISION_READS):
            decision = await self.store.decision(session_id)
            if decision is not None and decision.pause_id == pause.pause_id:
                return decision
            if attempt + 1 < DECISION_READS:
                await asyncio.sleep(DECISION_WAIT)
        return None

    async def close_child(self, frame: seats.Frame, error: BaseException) -> None:
        """End a sub-agent's session that did not complete; when it was `fail_fast` and the ledger
        failed its parent with it, stop the parent's run (CascadedFailure)."""
        seat = frame.seat
        await self.steps.end(seat, error)
        parent = frame.parent.seat if frame.parent is not None else None
        if parent is None or not seat.fail_fast or not parent.running or isinstance(error, asyncio.CancelledError):
            return
        if await self.steps.status(parent.session_id) == "failed":
            parent.ended("failed")
            raise CascadedFailure(parent.session_id, seat.session_id, words.reason(error))

    async def sandbox_for(self, parent: seats.Seat, choice: SandboxChoice) -> SandboxSpec | None:
        """The sandbox binding of a child: as given, or the parent's own sandbox forked or inherited."""
        if choice is None or isinstance(choice, SandboxSpec):
            return choice
        binding = (await self.ledger.session.get(session_id=parent.session_id)).session.sandbox
        if binding is None:
            raise AdapterError(f"session {parent.session_id} has no sandbox to {choice}")
        mode: Literal["fork", "inherit"] = choice
        return SandboxSpec(mode=mode, sandbox_id=binding.sandbox_id)

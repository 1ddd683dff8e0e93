"""A paused run and the approver's decision, kept in the tenant's checkpoint bucket
(`agentledger_checkpoints`, in the tenant's own account: a member's credentials read and write it,
and nothing here reaches the engine's stream).

    oa.pause.<root session id>     the run's pause: its RunState, the seats, the calls awaiting approval
    oa.decision.<session id>       the approver's decision for the pause of that session

Every member of the tenant can write the bucket, so nothing read here is trusted: a value that does
not decode is taken as absent (and counted in `skipped`); a decision counts only for the pause it
names (`pause_id`). Taking a pause deletes it on the revision that was read, so of two processes
resuming one run exactly one goes on."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Annotated, Literal, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from msgspec import Meta
from nats.aio.client import Client
from nats.js.kv import KeyValue

from agentledger.adapters.openai_agents.errors import StoreError
from agentledger.schemas.accounts import CHECKPOINT_BUCKET
from agentledger.schemas.ids import END, SessionId, ThreadId

ActorId = Annotated[str, Meta(pattern=r"^(agt|usr|sys)_[A-Za-z0-9_-]{1,64}" + END)]
Text = Annotated[str, Meta(max_length=1 << 20)]
T = TypeVar("T", bound=msgspec.Struct)
WRONG_LAST_SEQUENCE = 10071  # JetStream's error code for a failed expected-last-sequence check


class SeatRecord(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    session_id: SessionId
    actor: ActorId
    owner_version: Annotated[int, Meta(ge=0)]
    status: Literal["idle", "active", "awaiting_hitl", "failed", "ended"]
    usage: Annotated[int, Meta(ge=0)]
    delegated: bool


class PendingCall(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    call_id: Annotated[str, Meta(max_length=512)]
    tool: Annotated[str, Meta(max_length=512)]
    arguments: Text
    agent: Annotated[str, Meta(max_length=512)]


class Pause(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A run stopped for approvals: the SDK's RunState (`RunState.to_string()`) and what the adapter
    needs to speak for the same sessions when it goes on, in this process or another."""

    pause_id: Annotated[str, Meta(pattern=r"^[0-9a-f]{32}$")]
    thread_id: ThreadId
    run_id: Annotated[str, Meta(max_length=128)]
    root: SeatRecord
    seat: SeatRecord  # the session that asked for input (the root, or a handoff recipient)
    calls: list[PendingCall]
    state: Text


class Decision(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The approver's answer to one pause: approve (True) or reject (False) each call by its id."""

    pause_id: Annotated[str, Meta(pattern=r"^[0-9a-f]{32}$")]
    approvals: dict[Annotated[str, Meta(max_length=512)], bool]
    message: Annotated[str, Meta(max_length=4000)] | None = None


def pause_key(root_session_id: str) -> str:
    return f"oa.pause.{root_session_id}"


def decision_key(session_id: str) -> str:
    return f"oa.decision.{session_id}"


class RunStore:
    """The adapter's keys in the tenant's checkpoint bucket."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self.skipped: Counter[str] = Counter()  # values that did not decode, by key kind

    @classmethod
    async def open(cls, nc: Client, *, bucket: str = CHECKPOINT_BUCKET, timeout: float = 5.0) -> RunStore:
        try:
            return cls(await nc.jetstream(timeout=timeout).key_value(bucket))
        except nats.js.errors.BucketNotFoundError:
            raise StoreError(f"the tenant has no bucket {bucket!r}: `agentledger tenant add` makes it") from None
        except (nats.errors.Error, nats.js.errors.Error) as e:
            raise StoreError(f"cannot open the bucket {bucket!r}: {e!r}") from e

    async def _get(self, key: str, kind: str, cls: type[T]) -> tuple[T, int] | None:
        try:
            entry = await self.kv.get(key)
        except nats.js.errors.KeyNotFoundError:  # absent, deleted or purged
            return None
        except (nats.errors.Error, nats.js.errors.Error) as e:
            raise StoreError(f"cannot read {key}: {e!r}") from e
        try:
            return msgspec.json.decode(entry.value or b"", type=cls), entry.revision or 0
        except msgspec.ValidationError:
            self.skipped[kind] += 1
            return None

    async def _put(self, key: str, value: msgspec.Struct) -> int:
        try:
            return await self.kv.put(key, msgspec.json.encode(value))
        except (nats.errors.Error, nats.js.errors.Error) as e:
            raise StoreError(f"cannot write {key} (a RunState larger than the server's max_payload does not fit): "
                             f"{e!r}") from e

    async def put_pause(self, root_session_id: str, pause: Pause) -> int:
        return await self._put(pause_key(root_session_id), pause)

    async def pause(self, root_session_id: str) -> tuple[Pause, int] | None:
        """The run's pause and the revision it was read at, or None."""
        return await self._get(pause_key(root_session_id), "pause", Pause)

    async def take_pause(self, root_session_id: str, revision: int) -> bool:
        """Delete the pause if it is still the revision read; False when another process took it first."""
        try:
            await self.kv.delete(pause_key(root_session_id), last=revision)
        except nats.js.errors.APIError as e:
            if e.err_code == WRONG_LAST_SEQUENCE:
                return False
            raise StoreError(f"cannot take the pause of {root_session_id}: {e!r}") from e
        except (nats.errors.Error, nats.js.errors.Error) as e:
            raise StoreError(f"cannot take the pause of {root_session_id}: {e!r}") from e
        return True

    async def put_decision(self, session_id: str, decision: Decision) -> int:
        return await self._put(decision_key(session_id), decision)

    async def drop_decision(self, session_id: str) -> None:
        """Forget a decision once its pause is taken (best effort: a stale one never matches a new pause)."""
        with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
            await self.kv.delete(decision_key(session_id))

    async def decision(self, session_id: str) -> Decision | None:
        found = await self._get(decision_key(session_id), "decision", Decision)
        return None if found is None else found[0]

"""Carrying out `sandbox.exec` for the effect handler (handlers/effects.py).

An exec is not idempotent at the provider: run twice, a program does its work twice. So a request
is run at most once here, and the log says so when that is not known to have happened:

- the outcome of a run is kept until it is recorded, so a retry of the recording (the engine was
  unreachable, say) sends it again instead of running the program again;
- a request JetStream delivers again (the effect handler that took it stopped before its outcome
  was recorded: killed, or stopped mid-exec) is recorded as failed, `interrupted`, and not run.

While a program runs, the sandbox's own later requests wait for it (log order), except a destroy:
one requested meanwhile is carried out at once, which kills the program, and its outcome says
`killed`. What a program wrote is kept for the log within `EXEC_OUTPUT_KEPT` bytes per stream
(`recorded`).
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import re
from collections.abc import Awaitable, Callable

import msgspec

from agentledger.providers.base import ExecResult, ProviderError, SandboxProvider, SandboxRef
from agentledger.schemas.events import SandboxExecRequested
from agentledger.schemas.sandboxes import EXEC_OUTPUT_JSON, EXEC_OUTPUT_KEPT, ExecOutcome, ExecOutput

log = logging.getLogger("agentledger.effects")

INTERRUPTED = ("interrupted: delivered again after the effect handler that took it stopped before recording its "
               "outcome; the program may have run, partly or whole, and is not run again")
DestroyRequested = Callable[[], Awaitable[int | None]]
"""The position of a destroy of the sandbox requested after the exec, read fresh; None while there is none."""

_SHA256 = re.compile(r"[0-9a-f]{64}")
_encode = msgspec.json.Encoder().encode


def _text(data: bytes, complete: bool) -> tuple[str, int]:
    """`data` as text (an invalid byte becomes U+FFFD), and how many of its bytes that is: an
    incomplete character at the end of a cut stream is left out rather than shown as garbage."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    text = decoder.decode(data, final=complete)
    return text, len(data) - len(decoder.getstate()[0])


def recorded(head: bytes, size: int, sha256: str) -> ExecOutput:
    """One output stream as the log keeps it (pure): the first `EXEC_OUTPUT_KEPT` bytes of what the
    provider kept (`head`), as text whose JSON form stays within `EXEC_OUTPUT_JSON` bytes, with the
    stream's full `size` and `sha256`."""
    head = head[:EXEC_OUTPUT_KEPT]
    complete = len(head) >= size
    text, kept = _text(head, complete)
    if len(_encode(text)) > EXEC_OUTPUT_JSON:  # control characters or invalid bytes: keep less
        low, high = 0, kept
        while low < high:
            middle = (low + high + 1) // 2
            if len(_encode(_text(head[:middle], False)[0])) <= EXEC_OUTPUT_JSON:
                low = middle
            else:
                high = middle - 1
        text, kept = _text(head[:low], False)
    return ExecOutput(text=text, size=max(size, kept), kept=kept, sha256=sha256 if _SHA256.fullmatch(sha256) else "")


def outcome_of(result: ExecResult, killed: bool) -> ExecOutcome:
    """What the log records of a provider's `ExecResult` (pure)."""
    return ExecOutcome(exit_code=result.exit_code, duration_ms=max(result.duration_ms, 0),
                       stdout=recorded(result.stdout, result.stdout_size, result.stdout_sha256),
                       stderr=recorded(result.stderr, result.stderr_size, result.stderr_sha256),
                       timed_out=result.timed_out, killed=killed,
                       limits_hit=sorted({hit for hit in result.limits_hit if hit in ("memory", "pids")}))


class ExecRunner:
    """Runs each exec request once, and remembers what it did until the outcome is recorded."""

    def __init__(self, watch_every: float = 1.0) -> None:
        self.watch_every = watch_every  # seconds between looks for a destroy while a program runs
        self._unrecorded: dict[str, ExecOutcome | ProviderError] = {}  # request event id -> what its run did

    async def run(self, event_id: str, delivery: int, provider: SandboxProvider, ref: SandboxRef,
                  request: SandboxExecRequested, destroy_requested: DestroyRequested) -> ExecOutcome:
        """What the program did; a ProviderError when it did not run or failed (refused, `INTERRUPTED`)."""
        done = self._unrecorded.get(event_id)
        if done is None:
            if delivery > 1:
                raise ProviderError(INTERRUPTED)
            try:
                done = await self._watched(provider, ref, request, destroy_requested)
            except ProviderError as e:
                done = e
            except Exception as e:  # whatever it was, the program may have started: never run it again
                done = ProviderError(f"{type(e).__name__}: {e}")
            self._unrecorded[event_id] = done
        if isinstance(done, ProviderError):
            raise ProviderError(str(done))
        return done

    def recorded(self, event_id: str) -> None:
        """Its outcome is in the log (or was given up on): nothing to send again."""
        self._unrecorded.pop(event_id, None)

    async def _watched(self, provider: SandboxProvider, ref: SandboxRef, request: SandboxExecRequested,
                       destroy_requested: DestroyRequested) -> ExecOutcome:
        """Run the program; if a destroy of its sandbox is requested meanwhile, carry that out at once
        (it kills everything in the sandbox, the program with it) and say so."""
        running = asyncio.ensure_future(provider.exec(ref, list(request.argv), request.timeout_ms / 1000,
                                                      request.stdin.encode()))
        killed = False
        try:
            while not running.done():
                await asyncio.wait({running}, timeout=self.watch_every)
                if running.done() or killed:
                    continue
                try:
                    destroy = await destroy_requested()
                    if destroy is not None:
                        await provider.destroy(ref)  # the destroy's own turn finds it done (destroy is idempotent)
                        killed = True
                        log.info("exec in %s/%s killed: its sandbox's destroy was requested at %s", ref.tenant_id,
                                 ref.sandbox_id, destroy)
                except Exception as e:  # the program runs on (to its timeout at most); look again next time
                    log.warning("exec in %s/%s: looking for a destroy failed: %s: %s", ref.tenant_id, ref.sandbox_id,
                                type(e).__name__, e)
        finally:
            if not running.done():  # we were cancelled (the worker stops): the request comes back, interrupted
                running.cancel()
        return outcome_of(running.result(), killed)

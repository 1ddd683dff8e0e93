"""What the log keeps of an exec, decided without a log: output bounded so that any outcome fits in
one command and one event, and exec events that fit only the request they answer."""

from __future__ import annotations

import hashlib

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from agentledger.engine import admission
from agentledger.engine.codec import MAX_EVENT_BYTES
from agentledger.engine.sandbox_model import SandboxState
from agentledger.handlers.sandbox_exec import outcome_of, recorded
from agentledger.providers.base import ExecResult
from agentledger.schemas.commands import MAX_REQUEST_BYTES, SandboxReportOutcome
from agentledger.schemas.common import Actor
from agentledger.schemas.events import (
    Envelope,
    Event,
    SandboxCreated,
    SandboxCreateRequested,
    SandboxExecFailed,
    SandboxExecFinished,
    SandboxExecRequested,
    SandboxPauseRequested,
)
from agentledger.schemas.sandboxes import EXEC_OUTPUT_JSON, EXEC_OUTPUT_KEPT, ExecOutcome

ACTOR = Actor(kind="system", id="sys_sandbox_effects")
BOUNDARY = "ledger.evt.tnt_a.sbx.sbx_1.>"
HOSTILE = st.binary(max_size=3 * EXEC_OUTPUT_KEPT) | st.sampled_from([bytes(70_000), b"\x1b" * 70_000,
                                                                      b"\xff" * 70_000, "é".encode() * 40_000])


def result(out: bytes, err: bytes) -> ExecResult:
    return ExecResult(exit_code=0, duration_ms=5, stdout=out, stderr=err, stdout_size=len(out), stderr_size=len(err),
                      stdout_sha256=hashlib.sha256(out).hexdigest(), stderr_sha256=hashlib.sha256(err).hexdigest())


@settings(max_examples=200, deadline=None)
@given(HOSTILE)
def test_a_stream_is_kept_within_its_bounds_and_described_whole(data: bytes) -> None:
    kept = recorded(data, len(data), hashlib.sha256(data).hexdigest())
    assert len(msgspec.json.encode(kept.text)) <= EXEC_OUTPUT_JSON
    assert kept.kept <= min(len(data), EXEC_OUTPUT_KEPT) and kept.size == len(data)
    assert kept.sha256 == hashlib.sha256(data).hexdigest()
    assert kept.text == data[:kept.kept].decode("utf-8", errors="replace")  # the first bytes, as text
    assert kept.truncated == (kept.kept < len(data))


@settings(max_examples=50, deadline=None)
@given(HOSTILE, HOSTILE)
def test_any_outcome_fits_in_one_command_and_one_event(out: bytes, err: bytes) -> None:
    outcome = outcome_of(result(out, err), killed=False)
    report = SandboxReportOutcome(command_id="fx-" + "0" * 32, actor=ACTOR, correlation_id="c" * 128,
                                  causation_id="0" * 32, sandbox_id="sbx_" + "x" * 64, request_position=2**53 - 1,
                                  op="exec", ok=True, exec=outcome)
    assert len(msgspec.json.encode(report)) <= MAX_REQUEST_BYTES
    event = SandboxExecFinished(sandbox_id="sbx_1", request_position=2, outcome=outcome, sandbox_status="running")
    assert len(msgspec.json.encode(envelope(event))) <= MAX_EVENT_BYTES


def test_text_keeps_whole_characters_and_ordinary_text_whole() -> None:
    text = "€" * EXEC_OUTPUT_KEPT  # three bytes each: the 16 KiB cut falls inside one
    data = text.encode()
    kept = recorded(data, len(data), "")
    assert kept.text == "€" * (EXEC_OUTPUT_KEPT // 3) and kept.kept == EXEC_OUTPUT_KEPT // 3 * 3
    small = recorded(b"ok\n", 3, "")
    assert (small.text, small.kept, small.size, small.truncated) == ("ok\n", 3, 3, False)
    broken = recorded(b"ok\xe2\x82", 4, "not a digest")  # a program that ends on half a character
    assert (broken.text, broken.kept, broken.sha256) == ("ok\ufffd", 4, "")


def envelope(event: Event) -> Envelope:
    return Envelope(event_id="0" * 32, type=type(event).__struct_config__.tag, tenant_id="tnt_a", boundary=BOUNDARY,
                    command="c", command_id="c", correlation_id="c", actor=ACTOR, at="2026-01-01T00:00:00Z",
                    data=event)


def sandbox(*events: Event) -> SandboxState:
    state = SandboxState("tnt_a", BOUNDARY, "sbx_1")
    for position, event in enumerate(events, start=1):
        assert admission.fits(state, envelope(event)) is None
        state.apply(envelope(event), position)
    return state


def test_exec_events_fit_only_the_request_they_answer() -> None:
    """A forged outcome cannot close a lifecycle request as an exec, nor an exec as a lifecycle op,
    and no exec is requested of a sandbox that is to be paused."""
    created = SandboxCreateRequested(sandbox_id="sbx_1", provider="local")
    run = SandboxExecRequested(sandbox_id="sbx_1", session_id="ses_1", argv=["true"], timeout_ms=1000)
    state = sandbox(created, SandboxCreated(sandbox_id="sbx_1", location="/x", request_position=1), run)
    assert state.pending == {3: "exec"}
    done = ExecOutcome(exit_code=0, duration_ms=1)
    assert admission.fits(state, envelope(SandboxCreated(sandbox_id="sbx_1", location="/y", request_position=3)))
    assert admission.fits(state, envelope(SandboxExecFinished(sandbox_id="sbx_1", request_position=3, outcome=done,
                                                              sandbox_status="running"))) is None
    state.apply(envelope(SandboxExecFailed(sandbox_id="sbx_1", request_position=3, error="x", sandbox_status="running")),
                4)
    assert state.pending == {} and state.exec_outcome_at(3) == 4 and state.status == "running"
    state.apply(envelope(SandboxPauseRequested(sandbox_id="sbx_1")), 5)
    assert admission.fits(state, envelope(run)) == "sandbox is paused"
    assert admission.fits(state, envelope(SandboxExecFailed(sandbox_id="sbx_1", request_position=5, error="x",
                                                            sandbox_status="running")))

"""What the adapter writes into the ledger and shows the model, in words: summaries, reasons,
prompts and refusals, cut to the contract's limits. Pure functions, no I/O."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from agentledger.client import LedgerError, Summary

SUMMARY_MAX = 4000  # the contract's limits: summary text, reason, prompt
REASON_MAX = 2000
PROMPT_MAX = 4000


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def output_text(output: Any) -> str:
    """An agent's final output as text (a structured output as JSON when it can be)."""
    if isinstance(output, str):
        return output
    dump = getattr(output, "model_dump", None)
    if callable(dump):
        output = dump(mode="json")
    try:
        return json.dumps(output, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(output)


def completed(output: Any) -> Summary:
    """The summary of an agent that produced its final output."""
    return Summary(outcome="succeeded", text=_cut(output_text(output), SUMMARY_MAX))


def handed_off(recipient: str) -> Summary:
    """The summary of an agent whose turn ended in a handoff: its part is done, the work goes on."""
    return Summary(outcome="partial", text=f"handed off to {recipient}")


def reason(error: BaseException) -> str:
    """Why a session failed or was cancelled: the exception's type and message."""
    message = str(error)
    return _cut(f"{type(error).__name__}: {message}" if message else type(error).__name__, REASON_MAX)


def refusal(error: LedgerError) -> str:
    """What the model sees instead of a sub-agent's answer when the ledger refused to spawn it."""
    return f"The ledger refused to start this agent ({error.code}): {error.message}"


def approval_prompt(calls: Sequence[tuple[str, str, str]]) -> str:
    """The prompt of `session.request_input` for tool calls awaiting approval: (call id, tool, arguments)."""
    lines = [f"{tool}({arguments}) [call {call_id}]" for call_id, tool, arguments in calls]
    return _cut("Approve or reject: " + "; ".join(lines), PROMPT_MAX)

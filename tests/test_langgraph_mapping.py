"""What the LangGraph adapter decides without I/O: where a namespace sits in the session tree, which
session asked which interrupt, what a resume answers, and texts cut to the contract's limits."""

from __future__ import annotations

import re

from langgraph.types import Interrupt, PregelTask, StateSnapshot

from agentledger.adapters.langgraph import interrupts, namespaces
from agentledger.schemas.ids import id_pattern


def test_a_namespace_maps_to_the_task_that_runs_it() -> None:
    nested = "mid:4f1c|inner:9a2e"
    assert (namespaces.key(nested), namespaces.parent(nested), namespaces.depth(nested)) == (nested, "mid:4f1c", 2)
    assert namespaces.task(nested) == ("inner", "9a2e")
    # every subgraph one task runs (LangGraph numbers the later ones) is that task's one session
    assert namespaces.key("twice:77aa|1") == namespaces.key("twice:77aa") == "twice:77aa"
    assert namespaces.parent("twice:77aa|1|leaf:c3") == "twice:77aa" and namespaces.depth("twice:77aa|1|leaf:c3") == 2
    assert (namespaces.key(""), namespaces.parent("mid:4f1c"), namespaces.depth(""), namespaces.task("")) == ("", "", 0, ("", ""))


def test_child_session_ids_are_valid_stable_and_distinct() -> None:
    first = namespaces.child_session_id("ses_root1", "mid:4f1c")
    assert re.match(id_pattern("ses_"), first)
    assert first == namespaces.child_session_id("ses_root1", "mid:4f1c|2")  # the same task
    assert len({first, namespaces.child_session_id("ses_root2", "mid:4f1c"),
                namespaces.child_session_id("ses_root1", "mid:4f1d")}) == 3


def test_agent_ids_come_from_node_names() -> None:
    assert namespaces.agent_id("review", "agt_graph") == "agt_review"
    assert namespaces.agent_id("fix bugs.now", "agt_graph") == "agt_fix-bugs-now"
    assert namespaces.agent_id("...", "agt_graph") == "agt_graph"
    assert re.match(id_pattern("agt_"), namespaces.agent_id("n" * 200, "agt_graph"))


def test_the_parent_checkpoint_is_the_nearest_enclosing_one() -> None:
    chain = {"": "cp-root", "mid:4f1c": "cp-mid"}
    assert namespaces.parent_checkpoint("mid:4f1c|inner:9a2e", chain) == "cp-mid"
    assert namespaces.parent_checkpoint("mid:4f1c", chain) == "cp-root"
    assert namespaces.parent_checkpoint("mid:4f1cx|inner:1", chain) == "cp-root"  # a prefix is not a parent
    assert namespaces.parent_checkpoint("mid:4f1c", {}) is None


def _snap(ns: str, checkpoint_id: str, tasks: tuple[PregelTask, ...]) -> StateSnapshot:
    config = {"configurable": {"thread_id": "thd_t", "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}}
    return StateSnapshot({}, (), config, {}, None, None, tasks, ())  # type: ignore[arg-type]


def test_an_interrupt_belongs_to_the_namespace_that_raised_it() -> None:
    """LangGraph records a subgraph's interrupt at every level on its way up: it belongs to the
    deepest one; the root's own interrupts stay the root's."""
    deep, own = Interrupt("deep?", id="a" * 32), Interrupt("own?", id="b" * 32)
    inner = _snap("mid:1|inner:2", "cp3", (PregelTask("t3", "leaf", (), interrupts=(deep,)),))
    middle = _snap("mid:1", "cp2", (PregelTask("t2", "inner", (), interrupts=(deep,), state=inner),))
    root = _snap("", "cp1", (PregelTask("t1", "mid", (), interrupts=(deep,), state=middle),
                             PregelTask("t4", "ask", (), interrupts=(own,))))
    assert interrupts.origins(root) == [interrupts.Asked("", "cp1", (own,)),
                                        interrupts.Asked("mid:1|inner:2", "cp3", (deep,))]
    # a task that ran a subgraph which finished, then asked itself: the task's graph asked
    done = _snap("sub:5", "cp5", (PregelTask("t6", "leaf", (), result={}),))
    assert interrupts.origins(_snap("", "cp1", (PregelTask("t5", "sub", (), interrupts=(own,), state=done),))) == [
        interrupts.Asked("", "cp1", (own,))]
    assert interrupts.origins(_snap("", "cp1", ())) == []


def test_a_resume_answers_what_langgraph_resumes() -> None:
    one, two = "a" * 32, "b" * 32
    assert interrupts.answered("yes", [one]) == {one}
    assert interrupts.answered("yes", [one, two]) == set()  # ambiguous: LangGraph refuses it
    assert interrupts.answered({one: "yes", "c" * 32: "no"}, [one, two]) == {one}
    assert interrupts.answered({"not-an-id": 1}, [one]) == {one}  # a dict value is a value
    assert interrupts.answered("yes", []) == set()


def test_prompts_are_text_and_fit_the_contract() -> None:
    assert interrupts.prompt([Interrupt("may I?"), Interrupt({"question": "why?", "n": 2})]) == \
        'may I?\n{"question": "why?", "n": 2}'
    long = interrupts.prompt([Interrupt("x" * 5000)])
    assert len(long) == interrupts.MAX_PROMPT and long.endswith("…")

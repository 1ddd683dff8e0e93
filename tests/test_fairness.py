"""Fair shares of the request workers (`handlers.fairness`), checked as a model: whatever lanes
send, no lane holds more than its share, requests keep their order within a lane, a slot never
stays idle while a lane with room in its share waits, and a freed slot goes to a waiting lane
holding the fewest. Pure: no server."""

from __future__ import annotations

from collections import defaultdict, deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentledger.handlers.fairness import FairShare, Refused, Shares


def test_a_lane_beyond_its_share_waits_and_another_lane_runs_at_once() -> None:
    share: FairShare[str] = FairShare(Shares(slots=4, per_lane=3, queued=10))
    assert [share.admit("a", f"a{i}") for i in range(5)] == ["run", "run", "run", "wait", "wait"]
    assert share.admit("b", "b0") == "run"  # the slot a's share leaves free
    assert share.admit("b", "b1") == "wait"  # all slots taken now
    # a slot frees: b holds fewer than a, so b goes first, then a
    assert share.release("a") == [("b", "b1")]
    assert share.release("b") == [("a", "a3")]
    assert share.release("b") == []  # a holds its whole share: the slot stays free for others
    assert share.admit("b", "b2") == "run"
    assert share.release("a") == [("a", "a4")]
    assert share.admit("b", "b3") == "wait" and share.admit("c", "c0") == "wait"
    assert share.release("a") == [("c", "c0")]  # c holds none: before b, though b came first


def test_a_full_queue_is_refused_at_once_with_its_limit() -> None:
    share: FairShare[str] = FairShare(Shares(slots=2, per_lane=1, queued=2, queued_bytes=100))
    assert share.admit("a", "x", size=10) == "run"
    assert share.admit("a", "y", size=10) == "wait"
    assert share.admit("a", "z", size=95) == Refused("bytes_waiting", 100)
    assert share.admit("a", "z", size=10) == "wait"
    assert share.admit("a", "w", size=1) == Refused("requests_waiting", 2)
    assert share.admit("a", "w", size=1, force=True) == "wait"  # back from parking: never refused
    assert share.admit("b", "v") == "run"


def test_parking_places_are_bounded_per_lane() -> None:
    share: FairShare[str] = FairShare(Shares(slots=2, per_lane=1, parked=2))
    assert share.park("a") is None and share.park("a") is None
    assert share.park("a") == Refused("waits_parked", 2)
    assert share.park("b") is None
    share.unpark("a")
    assert share.park("a") is None


def test_shares_must_fit_the_slots() -> None:
    with pytest.raises(ValueError):
        Shares(slots=4, per_lane=5)
    assert Shares.of(64).per_lane == 48 and Shares.of(1).per_lane == 1


Op = tuple[str, int]  # ("admit", lane) or ("release", index into running)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.just("admit"), st.integers(0, 3)),
                          st.tuples(st.just("release"), st.integers(0, 50))), max_size=200),
       st.integers(1, 6), st.data())
def test_model(ops: list[Op], slots: int, data: st.DataObject) -> None:
    per_lane = data.draw(st.integers(1, slots))
    share: FairShare[tuple[str, int]] = FairShare(Shares(slots=slots, per_lane=per_lane, queued=1000))
    running: list[tuple[str, int]] = []
    waiting: dict[str, deque[int]] = defaultdict(deque)
    sent: dict[str, int] = defaultdict(int)
    started_order: dict[str, list[int]] = defaultdict(list)

    def started(items: list[tuple[str, tuple[str, int]]]) -> None:
        for lane, item in items:
            assert item[0] == lane and waiting[lane] and waiting[lane].popleft() == item[1]  # in order, per lane
            running.append(item)
            started_order[lane].append(item[1])

    for op, n in ops:
        if op == "admit":
            lane = f"l{n}"
            item = (lane, sent[lane])
            sent[lane] += 1
            outcome = share.admit(lane, item)
            if outcome == "run":
                assert not waiting[lane]
                running.append(item)
                started_order[lane].append(item[1])
            else:
                assert outcome == "wait"
                waiting[lane].append(item[1])
        elif running:
            lane, _ = running.pop(n % len(running))
            for name, item in share.release(lane):
                # the lane that starts holds the fewest slots of the waiting lanes with room
                holds = {other: sum(1 for r in running if r[0] == other) for other in waiting if waiting[other]}
                assert holds[name] == min(h for h in holds.values() if h < per_lane)
                started([(name, item)])
        held: dict[str, int] = defaultdict(int)
        for lane, _ in running:
            held[lane] += 1
        assert len(running) == share.running <= slots
        assert all(h <= per_lane for h in held.values())
        # work-conserving: a free slot never coexists with a lane that waits and has room
        if len(running) < slots:
            assert all(not waiting[lane] or held[lane] >= per_lane for lane in waiting)
    for lane, order in started_order.items():
        assert order == sorted(order), lane

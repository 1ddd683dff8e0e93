"""The token bucket behind per-tenant rates (`handlers.quotas.take`): pure, no server."""

from __future__ import annotations

import pytest

from agentledger.handlers.quotas import take


def test_a_new_bucket_holds_one_second_of_the_rate_and_refills_at_it() -> None:
    bucket, now, taken = None, 100.0, 0
    for _ in range(20):
        bucket, wait = take(bucket, 5.0, now)
        taken += wait == 0
    assert taken == 5
    assert wait == pytest.approx(0.2)  # the next token is a fifth of a second away
    bucket, wait = take(bucket, 5.0, now + 0.2)
    assert wait == 0
    bucket, wait = take(bucket, 5.0, now + 0.2)
    assert wait == pytest.approx(0.2)


def test_a_slow_rate_still_takes_one_request_and_never_stores_more_than_its_burst() -> None:
    bucket, wait = take(None, 0.5, 0.0)
    assert wait == 0
    bucket, wait = take(bucket, 0.5, 1.0)
    assert wait == pytest.approx(1.0)  # half a token there, the other half in a second
    bucket, wait = take(bucket, 0.5, 1000.0)  # idle a long time: still one request, not hundreds
    assert wait == 0
    _, wait = take(bucket, 0.5, 1000.0)
    assert wait == pytest.approx(2.0)


def test_a_clock_that_goes_back_adds_nothing() -> None:
    bucket, _ = take(None, 1.0, 10.0)
    _, wait = take(bucket, 1.0, 5.0)
    assert wait == pytest.approx(1.0)

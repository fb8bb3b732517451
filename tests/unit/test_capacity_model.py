"""The capacity model's behaviour (bench/capacity.py): a burst shows as a peak above the
day's mean, the load grows with the requests, and work over a limit waits instead of being
lost. Small days and made-up jobs, so each test takes well under a second."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from bench import capacity
from bench.capacity import DAY, Durations, Profile, Settings, Template

# One kind of job: polled 10, 40 and 70 s after its tracker starts, ending at the third.
ONE_JOB = Profile([Template("matatika", (10, 40, 70), 70)], max_poll_seconds=300, round_seconds=0)
TWO_PROVIDERS = Profile(
    [Template("deepset", (10, 40), 40), Template("pixxel", (10, 40, 70, 100), 100)],
    max_poll_seconds=300,
    round_seconds=0,
)


@cache
def figures(requests: int) -> dict[str, Any]:
    """A day of `requests` of ONE_JOB at the template's settings (each computed once)."""
    day = capacity.simulate(requests, ONE_JOB, durations=Durations())
    return capacity.figures(day, ONE_JOB, Settings(), Durations())


def test_a_third_of_the_day_arrives_within_the_burst_hour():
    sent = capacity.arrivals(9000)
    burst = sum(sent[capacity.BURST_START : capacity.BURST_START + 3600])
    assert sum(sent) == 9000
    assert burst == 3000


def test_the_burst_puts_the_peak_well_above_the_days_mean():
    transitions = figures(20_000)["measures"]["state_transitions"]
    assert transitions["peak"] > 5 * transitions["mean"]
    assert transitions["burst_hour_mean"] > 3 * transitions["mean"]
    # The peak falls within the burst hour or just after it (the jobs it started).
    assert capacity.BURST_START <= transitions["peak_second"] <= capacity.BURST_START + 3600 + 70


def test_doubling_the_requests_doubles_the_transitions_and_the_calls():
    one, two = figures(10_000)["measures"], figures(20_000)["measures"]
    # 1 transition to start, 3 per poll, 3 polls: 10 per request
    assert one["state_transitions"]["total"] == 10 * 10_000
    assert two["state_transitions"]["total"] == 2 * one["state_transitions"]["total"]
    assert two["start_execution"]["total"] == 2 * one["start_execution"]["total"]
    assert two["sns_publish"]["total"] == 2 * one["sns_publish"]["total"]
    assert two["dynamodb_writes"]["total"] == pytest.approx(2 * one["dynamodb_writes"]["total"])


def test_provider_calls_are_counted_per_provider():
    day = capacity.simulate(4000, TWO_PROVIDERS, durations=Durations())
    creates = {name: sum(row) for name, row in day.creates.items()}
    polls = {name: sum(row) for name, row in day.polls.items()}
    # The templates are drawn at random, about half each; each job one create, its polls.
    assert creates["deepset"] + creates["pixxel"] == 4000
    assert creates["deepset"] == pytest.approx(2000, rel=0.1)
    assert polls["deepset"] == 2 * creates["deepset"]
    assert polls["pixxel"] == 4 * creates["pixxel"]
    assert creates["matatika"] == polls["matatika"] == 0


def test_every_request_is_created_once_and_ends_once_even_when_creation_is_held_back():
    held = capacity.simulate(
        30_000, ONE_JOB, settings=Settings(max_creates_per_second=2.0), durations=Durations()
    )
    assert sum(held.created) == 30_000
    assert sum(held.outcomes) == 30_000
    # The burst (10,000 in an hour, 2.8 a second) is more than 2 a second: it waits in the
    # queue and drains later.
    assert max(held.backlog) > 1000
    assert held.queue_wait_max_seconds > 600
    assert max(held.created) <= 2


def test_the_event_sources_concurrency_bounds_how_fast_requests_are_created():
    durations = Durations()
    slow, fast = Settings(max_concurrency=2), Settings(max_concurrency=20)
    assert fast.create_rate(durations) == pytest.approx(10 * slow.create_rate(durations))
    assert Settings(max_creates_per_second=5).create_rate(durations) == 5


def test_open_executions_count_every_tracker_until_its_outcome():
    day = capacity.simulate(DAY, ONE_JOB, durations=Durations())  # one request a second
    # Each tracker is open for its 70 s (and the second it ends in).
    assert max(day.open_executions) >= 70
    assert min(day.open_executions) >= 0


def test_a_token_bucket_lets_a_burst_within_its_size_through_and_makes_more_wait():
    calm = [5.0] * 100
    assert not capacity.bucket(calm, size=10, refill=5)["throttled"]
    burst = [5.0] * 50 + [40.0] + [0.0] * 49
    waited = capacity.bucket(burst, size=20, refill=5)
    assert waited["throttled"]
    assert waited["most_waiting"] == pytest.approx(20)  # 40 asked of a full bucket of 20
    assert waited["longest_wait_seconds"] == pytest.approx(4)  # 20 over a refill of 5 a second


def test_growth_before_throttle_is_where_the_bucket_starts_to_make_work_wait():
    demand = [3.0] * 60 + [30.0] + [3.0] * 60
    growth = capacity.growth_before_throttle(demand, size=50, refill=10)
    assert not capacity.bucket([d * growth for d in demand], size=50, refill=10)["throttled"]
    assert capacity.bucket([d * growth * 1.05 for d in demand], size=50, refill=10)["throttled"]


def test_what_is_reached_first_is_named_per_region():
    first = figures(20_000)["first_throttled"]
    assert set(first) == set(capacity.REGIONS)
    small, large = first[capacity.SMALL], first[capacity.LARGE]
    # The small region's quotas are at most the large one's: it has less room to grow.
    assert small["growth_before_limit"] <= large["growth_before_limit"]

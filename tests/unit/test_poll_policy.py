"""The adaptive poll policy as pure logic: the detection lag it keeps, how hints and age
stretch its waits, and the bounds, jitter and deadline that cut them."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jobrelay.poll_policy import JobHints, PollPolicy

HOUR = 3600.0
DAY = 24 * HOUR


def bound(policy: PollPolicy, end_age: float) -> float:
    """The lag promised to a job that ends at `end_age`: max(base, 10% of its running time)."""
    return max(policy.base_seconds, 0.1 * end_age)


def detection_lag(
    policy: PollPolicy,
    end_age: float,
    draws: Iterator[float],
    *,
    first_poll: float,
    hints_at=lambda age: None,
) -> float:
    """Follow a job that ends at `end_age` poll by poll; how late its end is seen."""
    age = first_poll
    while age < end_age:
        decision = policy.decide(age=age, hints=hints_at(age), draw=next(draws))
        assert decision.wait_seconds >= 1
        age += decision.wait_seconds
    return age - end_age


def endless(values: list[float]) -> Iterator[float]:
    while True:
        yield from values


# ------------------------------------------------------------------ the lag bound, no hints
@settings(max_examples=300, deadline=None)
@given(
    end_age=st.floats(min_value=0.5, max_value=30 * DAY),
    base=st.integers(min_value=1, max_value=600),
    first_poll_share=st.floats(min_value=0.0, max_value=1.0),
    draws=st.lists(st.floats(min_value=0.0, max_value=0.999), min_size=1, max_size=8),
)
def test_without_hints_a_job_is_noticed_within_the_lag_bound(
    end_age, base, first_poll_share, draws
):
    # Given a policy whose lower bound does not exceed its base (the bound's precondition)
    policy = PollPolicy(base_seconds=base, max_poll_seconds=86_400)
    # When a job that ends at any age is followed from a first poll within the base
    lag = detection_lag(policy, end_age, endless(draws), first_poll=first_poll_share * base)
    # Then its end is seen within max(base, 10% of its running time)
    assert lag <= bound(policy, end_age)


@settings(max_examples=200, deadline=None)
@given(
    end_age=st.floats(min_value=1.0, max_value=2 * DAY),
    max_poll=st.integers(min_value=20, max_value=4000),
)
def test_an_upper_bound_below_the_lag_bound_only_makes_polls_more_frequent(end_age, max_poll):
    policy = PollPolicy(base_seconds=30, max_poll_seconds=max_poll)
    lag = detection_lag(policy, end_age, endless([0.5]), first_poll=10)
    assert lag <= min(bound(policy, end_age), max(max_poll, 30))


def test_a_young_job_waits_the_base_less_the_round_reserve():
    decision = PollPolicy(base_seconds=30).decide(age=10)
    assert decision.reason == "age"
    assert decision.wait_seconds == 29  # 2% kept for the round's own time
    assert decision.lag_bound_seconds == 30


def test_the_wait_grows_with_the_jobs_age():
    policy = PollPolicy(base_seconds=30, jitter=0.0, reserve=0.0, max_poll_seconds=86_400)
    waits = [policy.decide(age=age).wait_seconds for age in (60, 600, 3600, 6 * HOUR)]
    assert waits == [30, 60, 360, 2160]


def test_jitter_only_ever_shortens_a_wait():
    policy = PollPolicy(base_seconds=30, max_poll_seconds=86_400)
    calm = policy.decide(age=HOUR, draw=0.0).wait_seconds
    jittered = [policy.decide(age=HOUR, draw=d / 10).wait_seconds for d in range(10)]
    assert all(wait <= calm for wait in jittered)
    assert min(jittered) < calm
    assert min(jittered) >= math.floor(360 * (1 - policy.reserve - policy.jitter))


# ------------------------------------------------------------------ bounds and the deadline
def test_waits_stay_within_the_configured_bounds():
    policy = PollPolicy(base_seconds=30, min_poll_seconds=45, max_poll_seconds=600)
    young = policy.decide(age=5)
    old = policy.decide(age=5 * DAY)
    assert (young.wait_seconds, young.reason) == (45, "min")
    assert (old.wait_seconds, old.reason) == (600, "max")


def test_by_default_no_wait_is_longer_than_five_minutes():
    # The MaxPollSeconds default, chosen from the tracking frontier (docs/performance.md)
    policy = PollPolicy(base_seconds=30, jitter=0.0, reserve=0.0)
    old = policy.decide(age=6 * HOUR, hints=JobHints(estimated_duration_seconds=DAY))
    assert (old.wait_seconds, old.reason) == (300, "max")
    assert policy.decide(age=HOUR).wait_seconds == 300
    assert policy.decide(age=HOUR / 2).reason == "age"


def test_the_wait_never_passes_the_deadline():
    policy = PollPolicy(base_seconds=30)
    near = policy.decide(age=HOUR, until_deadline=7.0)
    past = policy.decide(age=HOUR, until_deadline=-20.0)
    assert (near.wait_seconds, near.reason) == (7, "deadline")
    assert past.wait_seconds == 1


def test_a_policy_refuses_bounds_that_cross():
    with pytest.raises(ValueError, match="max_poll_seconds"):
        PollPolicy(min_poll_seconds=60, max_poll_seconds=30)
    with pytest.raises(ValueError, match="jitter"):
        PollPolicy(jitter=0.9, reserve=0.2)


# ------------------------------------------------------------------ provider hints
def test_an_estimate_stretches_the_wait_towards_the_predicted_end():
    # Given a job its provider expects to take 6 hours, seen at 1 hour
    policy = PollPolicy(base_seconds=30, jitter=0.0, reserve=0.0, max_poll_seconds=86_400)
    decision = policy.decide(age=HOUR, hints=JobHints(estimated_duration_seconds=6 * HOUR))
    # Then the wait is stretched, but to no more than hint_stretch times the lag bound
    assert decision.reason == "hint"
    assert decision.wait_seconds == 3 * 360
    assert decision.predicted_end_age == 6 * HOUR


def test_a_stretched_wait_lands_before_the_predicted_end_less_its_margin():
    policy = PollPolicy(base_seconds=30, jitter=0.0, reserve=0.0, max_poll_seconds=86_400)
    decision = policy.decide(age=4 * HOUR, hints=JobHints(estimated_duration_seconds=6 * HOUR))
    assert decision.reason == "hint"
    assert 4 * HOUR + decision.wait_seconds <= 0.75 * 6 * HOUR


def test_near_or_past_its_predicted_end_a_job_is_polled_by_age():
    policy = PollPolicy(base_seconds=30, jitter=0.0, reserve=0.0, max_poll_seconds=86_400)
    near = policy.decide(age=5 * HOUR, hints=JobHints(estimated_duration_seconds=6 * HOUR))
    overrun = policy.decide(age=7 * HOUR, hints=JobHints(estimated_duration_seconds=6 * HOUR))
    assert near.reason == "age"
    assert overrun.reason == "age"
    assert overrun.predicted_end_age is None


def test_progress_over_time_predicts_the_end():
    # Given deepset-like progress: 10% done when first seen running at 10 min, 30% at 30 min
    policy = PollPolicy(base_seconds=30)
    hints = JobHints(progress=0.3, progress_origin=0.1, progress_origin_age=600)
    # Then the rate (20% in 20 minutes) predicts the end at 100 minutes
    assert policy.predicted_end(1800, hints) == pytest.approx(6000)


def test_progress_that_has_barely_moved_predicts_nothing():
    policy = PollPolicy(base_seconds=30)
    hints = JobHints(progress=0.12, progress_origin=0.1, progress_origin_age=600)
    assert policy.predicted_end(1800, hints) is None
    assert policy.predicted_end(1800, JobHints(progress=0.5)) is None


def test_of_two_predictions_the_earlier_is_trusted():
    policy = PollPolicy(base_seconds=30)
    hints = JobHints(
        estimated_duration_seconds=10 * HOUR,
        progress=0.5,
        progress_origin=0.0,
        progress_origin_age=0,
    )
    assert policy.predicted_end(HOUR, hints) == pytest.approx(2 * HOUR)


@settings(max_examples=300, deadline=None)
@given(
    predicted=st.floats(min_value=60, max_value=10 * DAY),
    late_share=st.floats(min_value=0.0, max_value=2.0),
    draws=st.lists(st.floats(min_value=0.0, max_value=0.999), min_size=1, max_size=8),
)
def test_a_job_ending_within_the_margin_of_its_prediction_or_later_keeps_the_lag_bound(
    predicted, late_share, draws
):
    # Given a provider that predicts the end, and a job that ends no earlier than the
    # start of the margin the policy does not trust
    policy = PollPolicy(base_seconds=30, max_poll_seconds=86_400)
    earliest = (1 - policy.hint_margin) * predicted
    end_age = earliest + late_share * predicted
    hints = JobHints(estimated_duration_seconds=predicted)
    # When it is followed with those hints
    lag = detection_lag(policy, end_age, endless(draws), first_poll=10, hints_at=lambda age: hints)
    # Then its end is seen within the same bound as without hints
    assert lag <= bound(policy, end_age)


@settings(max_examples=300, deadline=None)
@given(
    predicted=st.floats(min_value=60, max_value=10 * DAY),
    early_share=st.floats(min_value=0.0, max_value=1.0),
    draws=st.lists(st.floats(min_value=0.0, max_value=0.999), min_size=1, max_size=8),
)
def test_a_job_ending_long_before_its_prediction_costs_at_most_the_stretch(
    predicted, early_share, draws
):
    # Given a job that ends anywhere before its provider said (it failed early, say)
    policy = PollPolicy(base_seconds=30, max_poll_seconds=86_400)
    end_age = max(0.5, early_share * predicted)
    hints = JobHints(estimated_duration_seconds=predicted)
    lag = detection_lag(policy, end_age, endless(draws), first_poll=10, hints_at=lambda age: hints)
    # Then the lag is at most hint_stretch times the bound
    assert lag <= policy.hint_stretch * bound(policy, end_age)

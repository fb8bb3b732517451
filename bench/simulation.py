"""The tracking cost model: a seeded mix of jobs followed by a poll policy in virtual time.

Each job is followed poll by poll the way the tracker does it (first poll, then the wait the
policy chooses plus the round's own time), so the number of polls and the detection lag
come from the same decisions `jobrelay.polling` makes; only the clock is simulated. What a
round costs in state transitions is measured elsewhere (from real executions) and applied
here.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from jobrelay.poll_policy import JobHints, PollPolicy

MIN_DURATION = 60.0
MAX_DURATION = 6 * 3600.0
# Share of the mix whose provider tells something (deepset and Pixxel of the three).
HINTED_SHARE = 2 / 3
# How far a provider's estimate is off (log-normal sigma) and how many jobs end long before
# anything predicted (a failure half-way, say): assumptions, stated in docs/performance.md.
ESTIMATE_SIGMA = 0.15
EARLY_END_SHARE = 0.05


@dataclass(frozen=True)
class Job:
    duration: float  # created to ended, seconds
    queued: float  # created to running
    hints: str  # "none", "estimate" (Pixxel) or "progress" (deepset)
    estimate: float | None = None  # what the provider says the whole job takes
    planned: float | None = None  # when progress would reach 100% (differs if it ends early)
    requests: int = 100  # deepset progress is executed / total requests: it moves in steps

    def report(self, age: float) -> JobHints:
        if self.hints == "estimate":
            return JobHints(estimated_duration_seconds=self.estimate)
        if self.hints == "progress" and age >= self.queued:
            planned = self.planned or self.duration
            share = min(1.0, (age - self.queued) / max(planned - self.queued, 1e-9))
            return JobHints(progress=math.floor(share * self.requests) / self.requests)
        return JobHints()


def job_mix(count: int, *, seed: int, hinted_share: float) -> list[Job]:
    """Durations log-uniform from 1 minute to 6 hours; a share of them with provider hints."""
    rng = random.Random(seed)
    jobs = []
    for index in range(count):
        planned = math.exp(rng.uniform(math.log(MIN_DURATION), math.log(MAX_DURATION)))
        queued = rng.uniform(0.0, min(60.0, 0.1 * planned))
        duration = planned
        if rng.random() < EARLY_END_SHARE:
            duration = queued + rng.uniform(0.05, 0.95) * (planned - queued)
        kind = "none"
        if rng.random() < hinted_share:
            kind = "estimate" if index % 2 else "progress"
        estimate = planned * math.exp(rng.gauss(0.0, ESTIMATE_SIGMA))
        jobs.append(
            Job(
                duration=duration,
                queued=queued,
                hints=kind,
                estimate=estimate if kind == "estimate" else None,
                planned=planned,
                requests=rng.randint(10, 200),
            )
        )
    return jobs


@dataclass(frozen=True)
class Followed:
    polls: int
    lag: float
    bound: float
    hours: float
    hinted: bool = False  # its provider told something (the lag bound is promised otherwise)


Waits = Callable[[float, JobHints, "_Origin"], float]


@dataclass
class _Origin:
    progress: float | None = None
    age: float | None = None


def adaptive(policy: PollPolicy, rng: random.Random) -> Waits:
    def wait(age: float, seen: JobHints, origin: _Origin) -> float:
        hints = JobHints(
            progress=seen.progress,
            estimated_duration_seconds=seen.estimated_duration_seconds,
            progress_origin=origin.progress,
            progress_origin_age=origin.age,
        )
        return policy.decide(age=age, hints=hints, draw=rng.random()).wait_seconds

    return wait


def fixed(seconds: float) -> Waits:
    return lambda age, seen, origin: seconds


def poll_ages(job: Job, waits: Waits, *, first_poll: float, round_seconds: float) -> list[float]:
    """The job's age at each poll, from `first_poll` on, the last one the poll that sees it
    ended (the capacity model places these in time)."""
    age, ages, origin = first_poll, [], _Origin()
    while True:
        ages.append(age)
        if age >= job.duration:
            return ages
        seen = job.report(age)
        if origin.progress is None and seen.progress is not None:
            origin = _Origin(seen.progress, age)
        age += waits(age, seen, origin) + round_seconds


def follow(job: Job, waits: Waits, *, first_poll: float, round_seconds: float) -> Followed:
    """Poll `job` from `first_poll` on until a poll sees it ended."""
    ages = poll_ages(job, waits, first_poll=first_poll, round_seconds=round_seconds)
    bound = max(30.0, 0.1 * job.duration)
    return Followed(
        len(ages), ages[-1] - job.duration, bound, job.duration / 3600, job.hints != "none"
    )


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    position = share * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(
    followed: list[Followed], *, transitions_per_round: float, transitions_per_execution: float
) -> dict[str, float]:
    polls = [f.polls for f in followed]
    transitions = [transitions_per_round * p + transitions_per_execution for p in polls]
    hours = sum(f.hours for f in followed)
    lags = [f.lag for f in followed]
    unhinted = [f for f in followed if not f.hinted]
    return {
        "jobs": len(followed),
        "polls_per_job": statistics.fmean(polls),
        "transitions_per_job": statistics.fmean(transitions),
        "transitions_per_job_hour": sum(transitions) / hours,
        "lag_p50_seconds": percentile(lags, 0.50),
        "lag_p95_seconds": percentile(lags, 0.95),
        "lag_to_bound_p95": percentile([f.lag / f.bound for f in followed], 0.95),
        "lag_within_bound_share": sum(f.lag <= f.bound for f in followed) / len(followed),
        # The promise without hints: every such job within max(30 s, 10%) of its end (1.0
        # when the mix has none).
        "unhinted_jobs": len(unhinted),
        "unhinted_within_bound_share": (
            sum(f.lag <= f.bound for f in unhinted) / len(unhinted) if unhinted else 1.0
        ),
        "unhinted_lag_to_bound_max": max((f.lag / f.bound for f in unhinted), default=0.0),
    }

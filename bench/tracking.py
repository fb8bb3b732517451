"""(3) Tracking cost: polls, state transitions, detection lag and dollars per 1,000 jobs for
jobrelay's poll policy next to fixed 30 s and 60 s polling (the AWS job-poller sample), and
the frontier an operator chooses `MaxPollSeconds` from: the same figures for each of
`FRONTIER_MAX_POLL_SECONDS`.

What a poll round costs is counted from real executions of the state machine in the local
stack (`get_execution_history`): state transitions per round and per execution, and the
PollJobStatus task's duration. The job mix is then followed in virtual time by the policy
itself (`bench.simulation`), so hours-long jobs take no hours.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from datetime import datetime
from typing import Any

import boto3
from jobrelay.poll_policy import PollPolicy

from bench.common import local_stack, request
from bench.simulation import (
    EARLY_END_SHARE,
    ESTIMATE_SIGMA,
    HINTED_SHARE,
    Job,
    Waits,
    adaptive,
    fixed,
    follow,
    job_mix,
    summarize,
)

# Published prices (us-east-1): Step Functions Standard, Lambda arm64 at 256 MB.
PRICE_PER_TRANSITION = 0.025 / 1000
PRICE_PER_GB_SECOND = 0.0000133334
PRICE_PER_REQUEST = 0.20 / 1_000_000
MEMORY_GB = 256 / 1024
FIRST_POLL_SECONDS = 10  # the FirstPollSeconds default
JOBS = 3000
SEED = 20261123
# Durations of the real executions counted, seconds: each takes a different number of rounds.
MEASURED_DURATIONS = (1.0, 2.0, 3.5, 5.0, 7.0)
# The upper bounds of the frontier (the default, PollPolicy().max_poll_seconds, among them).
FRONTIER_MAX_POLL_SECONDS = (60, 300, 900, 3600)


def _seconds(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


def measure_rounds() -> dict[str, Any]:
    """Run short jobs through the real definition; count what each execution recorded."""
    parameters = {"PollIntervalSeconds": "1", "FirstPollSeconds": "1"}
    with local_stack(parameters, feed_queue=False) as local:
        emulator = local.emulators["matatika"]
        ids = []
        for index, duration in enumerate(MEASURED_DURATIONS):
            request_id = f"rounds-{index}"
            body = request(request_id, "matatika")
            emulator.configure_target(body["params"]["pipeline_id"], queued=0.0, duration=duration)
            local.submit(body)
            ids.append(request_id)
        assert local.source is not None
        while local.source.poll_once():  # CreateJob, batch by batch, until the queue is empty
            pass
        outcomes, still_open = local.wait_for_outcomes(ids, timeout=120)
        if still_open:
            raise RuntimeError(f"no outcome for {sorted(still_open)}")
        sfn = boto3.client("stepfunctions")
        samples = []
        task_seconds: list[float] = []
        for execution in sfn.list_executions(
            stateMachineArn=local.require_stack().state_machine_arn
        )["executions"]:
            events = sfn.get_execution_history(
                executionArn=execution["executionArn"], maxResults=1000
            )["events"]
            entered = [e for e in events if "stateEnteredEventDetails" in e]
            rounds = sum(e["stateEnteredEventDetails"]["name"] == "PollJobStatus" for e in entered)
            samples.append((rounds, len(entered), len(events)))
            started: dict[int, datetime] = {}
            for event in events:
                if event["type"] == "TaskStarted":
                    started[event["id"]] = event["timestamp"]
                elif event["type"] == "TaskSucceeded" and event["previousEventId"] in started:
                    task_seconds.append(
                        _seconds(started[event["previousEventId"]], event["timestamp"])
                    )
    per_round, per_execution = _fit(samples)
    events_per_round, _ = _fit([(r, e, 0) for r, _, e in samples])
    return {
        "executions": len(samples),
        "rounds": [s[0] for s in samples],
        "transitions": [s[1] for s in samples],
        "history_events": [s[2] for s in samples],
        "transitions_per_round": per_round,
        "transitions_per_execution": per_execution,
        "history_events_per_round": events_per_round,
        "task_seconds_mean": statistics.fmean(task_seconds),
        "outcomes": sorted({o["type"] for o in outcomes.values()}),
    }


def _fit(samples: list[tuple[int, int, int]]) -> tuple[float, float]:
    """Least squares: count = per_round * rounds + per_execution."""
    xs = [float(s[0]) for s in samples]
    ys = [float(s[1]) for s in samples]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    return slope, mean_y - slope * mean_x


def _cost_per_thousand(summary: dict[str, float], task_seconds: float) -> dict[str, float]:
    transitions = summary["transitions_per_job"] * 1000 * PRICE_PER_TRANSITION
    billed = max(0.001, round(task_seconds, 3))
    invocations = summary["polls_per_job"] * 1000
    lambda_cost = invocations * (PRICE_PER_REQUEST + MEMORY_GB * billed * PRICE_PER_GB_SECOND)
    return {
        "dollars_transitions_per_1000_jobs": transitions,
        "dollars_lambda_per_1000_jobs": lambda_cost,
        "dollars_per_1000_jobs": transitions + lambda_cost,
    }


Build = Callable[[random.Random], tuple[Waits, float]]


def _row(
    jobs: list[Job], build: Build, *, per_round: float, per_execution: float, round_seconds: float
) -> dict[str, float]:
    waits, first = build(random.Random(SEED))
    followed = [follow(job, waits, first_poll=first, round_seconds=round_seconds) for job in jobs]
    summary = summarize(
        followed, transitions_per_round=per_round, transitions_per_execution=per_execution
    )
    summary.update(_cost_per_thousand(summary, round_seconds))
    return summary


def _adaptive(policy: PollPolicy) -> Build:
    return lambda rng: (adaptive(policy, rng), FIRST_POLL_SECONDS)


def run() -> dict[str, Any]:
    measured = measure_rounds()
    return simulate(measured)


def simulate(measured: dict[str, Any]) -> dict[str, Any]:
    """The mixes and the frontier in virtual time, from what a round was measured to cost."""
    costs = {
        "per_round": measured["transitions_per_round"],
        "per_execution": measured["transitions_per_execution"],
        "round_seconds": measured["task_seconds_mean"],
    }
    policy = PollPolicy()
    strategies: dict[str, Build] = {
        "jobrelay": _adaptive(policy),
        "fixed 30 s": lambda rng: (fixed(30), 30),
        "fixed 60 s": lambda rng: (fixed(60), 60),
    }
    mixes = {"mix": HINTED_SHARE, "without hints": 0.0, "with hints": 1.0}
    results: dict[str, Any] = {
        "measured": measured,
        "jobs_per_mix": JOBS,
        "assumptions": {
            "durations": "log-uniform 60 s to 6 h",
            "hinted_share_of_mix": HINTED_SHARE,
            "estimate_sigma": ESTIMATE_SIGMA,
            "early_end_share": EARLY_END_SHARE,
            "first_poll_seconds": {"jobrelay": FIRST_POLL_SECONDS, "fixed": "the interval"},
            "round_seconds": costs["round_seconds"],
            "max_poll_seconds": policy.max_poll_seconds,
        },
        "mixes": {},
    }
    jobs_of = {name: job_mix(JOBS, seed=SEED, hinted_share=share) for name, share in mixes.items()}
    for mix_name, jobs in jobs_of.items():
        rows = {name: _row(jobs, build, **costs) for name, build in strategies.items()}
        baseline = rows["fixed 30 s"]["transitions_per_job_hour"]
        for row in rows.values():
            row["transitions_per_job_hour_to_fixed_30"] = row["transitions_per_job_hour"] / baseline
        results["mixes"][mix_name] = rows
    results["frontier"] = frontier(jobs_of, results["mixes"], costs)
    return results


def frontier(
    jobs_of: dict[str, list[Job]], mixes: dict[str, Any], costs: dict[str, float]
) -> dict[str, Any]:
    """The policy with each upper bound of `FRONTIER_MAX_POLL_SECONDS`, over the mix (and
    the unhinted jobs alone), beside the fixed pollers of the same mix."""
    default = PollPolicy().max_poll_seconds
    rows = []
    for bound in FRONTIER_MAX_POLL_SECONDS:
        build = _adaptive(PollPolicy(max_poll_seconds=bound))
        row: dict[str, Any] = {"max_poll_seconds": bound, "default": bound == default}
        for mix_name in ("mix", "without hints"):
            summary = _row(jobs_of[mix_name], build, **costs)
            baseline = mixes[mix_name]["fixed 30 s"]["transitions_per_job_hour"]
            summary["transitions_per_job_hour_to_fixed_30"] = (
                summary["transitions_per_job_hour"] / baseline
            )
            if mix_name == "mix":
                row.update(summary)
            else:
                row["without_hints"] = summary
        rows.append(row)
    return {
        "default_max_poll_seconds": default,
        "rows": rows,
        "fixed": {name: mixes["mix"][name] for name in ("fixed 30 s", "fixed 60 s")},
    }

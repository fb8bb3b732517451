"""The invariant of DESIGN.md, checked from the outside after a run: every request ends in
exactly one terminal outcome event, or sits in the DLQ with its reason, and no request ever
creates two remote jobs.

`check_invariant` looks only at what a user of jobrelay could see: the provider's side (the
emulators' jobs and create counts), the request queue, the DLQ, the published events and the
tracker executions. Reusable by any test that drives a `Harness`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, get_args

from jobrelay.models import EventType, execution_name

from tests.integration.conftest import Harness

# Every outcome type the event contract defines.
OUTCOME_TYPES = frozenset(get_args(EventType))
CANCELLED = "jobrelay.job.cancelled"


@dataclass(frozen=True)
class RequestUnderTest:
    """One request as sent: the key its events carry (its request id, or the SQS message id
    when the body has no usable one), its messages, and where it may create remote jobs."""

    key: str
    message_ids: tuple[str, ...]
    provider: str | None = None
    target: str | None = None  # the emulator target (pipeline or workflow) of its jobs


@dataclass
class Verdict:
    """What became of one request, and every way it breaks the invariant."""

    key: str
    outcome: str | None = None  # an event type, "dlq", or None: lost
    events: list[dict[str, Any]] = field(default_factory=list)
    remote_jobs: list[str] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def lost(self) -> bool:
        return self.outcome is None

    @property
    def event(self) -> dict[str, Any] | None:
        return self.events[0] if self.events else None


@dataclass
class InvariantReport:
    verdicts: dict[str, Verdict]
    queue_depth: int

    @property
    def lost(self) -> int:
        return sum(v.lost for v in self.verdicts.values())

    @property
    def duplicate_remote_jobs(self) -> int:
        """Remote jobs beyond the first, summed over requests."""
        return sum(max(0, len(v.remote_jobs) - 1) for v in self.verdicts.values())

    @property
    def duplicate_events(self) -> int:
        """Outcome events beyond the first, summed over requests."""
        return sum(max(0, len(v.events) - 1) for v in self.verdicts.values())

    def violations(self, keys: Iterable[str] | None = None) -> dict[str, list[str]]:
        wanted = self.verdicts.keys() if keys is None else keys
        return {k: self.verdicts[k].problems for k in wanted if self.verdicts[k].problems}

    def assert_holds(self, keys: Iterable[str] | None = None) -> None:
        broken = self.violations(keys)
        assert not broken, f"the invariant does not hold: {broken}"
        assert self.queue_depth == 0, f"{self.queue_depth} messages still on the request queue"


def _attribute(message: dict[str, Any], name: str) -> str | None:
    value = message.get("MessageAttributes", {}).get(name)
    return None if value is None else str(value.get("StringValue"))


def check_invariant(harness: Harness, requests: Iterable[RequestUnderTest]) -> InvariantReport:
    """Judge every request of a finished run (call it once outcomes had time to arrive)."""
    events = harness.events()
    dead_letters = harness.dead_letters()
    jobs_by_target: dict[tuple[str, str], list[str]] = {}
    for name, emulator in harness.emulators.items():
        for job in emulator.jobs():
            jobs_by_target.setdefault((name, job["target"]), []).append(job["id"])
    executions = [
        execution
        for page in harness.sfn.get_paginator("list_executions").paginate(
            stateMachineArn=harness.stack.state_machine_arn
        )
        for execution in page["executions"]
    ]
    verdicts: dict[str, Verdict] = {}
    for request in requests:
        verdict = Verdict(key=request.key)
        verdict.events = [
            e
            for e in events
            if e["data"]["request_id"] == request.key and e["type"] in OUTCOME_TYPES
        ]
        verdict.dead_letters = [
            m
            for m in dead_letters
            if _attribute(m, "jobrelay_source_message_id") in request.message_ids
            or m["MessageId"] in request.message_ids
            or _attribute(m, "jobrelay_request_id") == request.key
        ]
        if request.provider and request.target:
            verdict.remote_jobs = jobs_by_target.get((request.provider, request.target), [])
        _judge(verdict, executions)
        verdicts[request.key] = verdict
    return InvariantReport(verdicts=verdicts, queue_depth=harness.queue_depth())


def _judge(verdict: Verdict, executions: list[Any]) -> None:
    problems = verdict.problems
    if len(verdict.events) > 1:
        ids = {e["id"] for e in verdict.events}
        types = [e["type"] for e in verdict.events]
        problems.append(f"{len(verdict.events)} outcome events ({len(ids)} distinct ids): {types}")
    if verdict.events:
        verdict.outcome = verdict.events[0]["type"]
    elif verdict.dead_letters:
        verdict.outcome = "dlq"
        if not any(_attribute(m, "jobrelay_reason") for m in verdict.dead_letters):
            # SQS redrove it after maxReceiveCount: in the DLQ, but without jobrelay's reason.
            problems.append("in the DLQ without a reason (redriven by SQS)")
    else:
        problems.append("lost: no outcome event and nothing in the DLQ")
    if len(verdict.remote_jobs) > 1:
        problems.append(f"{len(verdict.remote_jobs)} remote jobs: {verdict.remote_jobs}")
    event = verdict.event
    if event is not None:
        remote = event["data"].get("remote_job_id")
        if remote is not None and remote not in verdict.remote_jobs:
            problems.append(f"the event names {remote}, not a job made for this request")
        if event["type"] == "jobrelay.job.rejected" and not verdict.dead_letters:
            problems.append("rejected without a DLQ copy")
        if event["type"] != "jobrelay.job.rejected" and verdict.dead_letters:
            problems.append("an outcome and a DLQ copy")
    name = execution_name(verdict.key)
    # A cancel ends tracking by stopping the tracker: ABORTED is its end, for that outcome.
    ended_well = {"SUCCEEDED", "ABORTED"} if verdict.outcome == CANCELLED else {"SUCCEEDED"}
    running = [
        e["name"]
        for e in executions
        if e["name"].startswith(name) and e["status"] not in ended_well
    ]
    if running:
        problems.append(f"tracker executions not succeeded: {running}")

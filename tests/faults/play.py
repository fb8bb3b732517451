"""The run that plays every fault scenario at once on one local stack: requests sent, CreateJob
batches driven here (as Lambda's SQS poller would), the AWS-side failures injected, job-scoped
faults installed the moment a job exists, and each request judged by `invariant`."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from jobrelay.aws import (
    DynamoJobLedger as JobLedger,
)
from jobrelay.aws import (
    SnsOutcomePublisher as OutcomePublisher,
)
from jobrelay.aws import (
    SqsDeadLetterQueue as DeadLetterQueue,
)
from jobrelay.aws import (
    StepFunctionsTrackerStarter as TrackerStarter,
)
from jobrelay.models import OutcomeEvent, TrackerState
from jobrelay.polling import JobPoller
from jobrelay.providers.matatika import MatatikaProvider
from jobrelay.tracker_ended import TrackerEndedService
from jobrelay_local.emulators import Fault
from jobrelay_local.emulators.jobs import EmulatedJob

from tests.faults.invariant import InvariantReport, RequestUnderTest, Verdict, check_invariant
from tests.faults.scenarios import (
    BY_ID,
    CANCELLED_BY,
    MATATIKA_RETRY_GRACE_SECONDS,
    Scenario,
)
from tests.integration.conftest import Harness


# ------------------------------------------------------------------ AWS-side failures
class Once:
    """Fails the first call made for each armed request id, passes every other call."""

    def __init__(self, *request_ids: str) -> None:
        self.armed = set(request_ids)
        self.fired: list[str] = []

    def fire(self, request_id: str, error: Exception) -> None:
        if request_id in self.armed:
            self.armed.discard(request_id)
            self.fired.append(request_id)
            raise error


@contextlib.contextmanager
def aws_failures(scenario_ids: set[str]) -> Iterator[dict[str, Once]]:
    """Patch the AWS ports (and the poll task) to fail once for the scenarios that ask."""

    def rid(name: str) -> str:
        return BY_ID[name].request_id

    armed = {
        "ledger": Once(*(rid(s) for s in scenario_ids & {"aws-ledger-write-fails-after-create"})),
        "start": Once(*(rid(s) for s in scenario_ids & {"aws-tracker-start-fails-after-create"})),
        "publish": Once(
            *(
                rid(s)
                for s in scenario_ids
                & {"aws-sns-publish-fails-once", "aws-sns-publish-of-rejection-fails-once"}
            )
        ),
        "poll": Once(*(rid(s) for s in scenario_ids & {"aws-poll-task-throws"})),
        "dlq": Once(*(rid(s) for s in scenario_ids & {"aws-dlq-copy-fails-after-rejected-event"})),
        "tracker_ended": Once(*(rid(s) for s in scenario_ids & {"aws-tracker-ended-fails-once"})),
        "tracker_ended_after": Once(
            *(rid(s) for s in scenario_ids & {"aws-tracker-ended-fails-after-publishing"})
        ),
    }
    real_record = JobLedger.record_created
    real_start = TrackerStarter.start
    real_publish = OutcomePublisher.publish
    real_poll = JobPoller.poll
    real_send = DeadLetterQueue.send
    real_tracker_ended = TrackerEndedService.handle

    def record_created(self: JobLedger, request_id: str, *args: Any, **kwargs: Any) -> None:
        armed["ledger"].fire(request_id, ConnectionError("DynamoDB write failed"))
        real_record(self, request_id, *args, **kwargs)

    def start(self: TrackerStarter, state: TrackerState) -> tuple[str, bool]:
        armed["start"].fire(state.job.request_id, ConnectionError("StartExecution throttled"))
        return real_start(self, state)

    def publish(self: OutcomePublisher, event: OutcomeEvent) -> str:
        armed["publish"].fire(event.data.request_id, ConnectionError("SNS Publish failed"))
        return real_publish(self, event)

    def poll(self: JobPoller, state: TrackerState) -> TrackerState:
        armed["poll"].fire(state.job.request_id, RuntimeError("poll task blew up"))
        return real_poll(self, state)

    def send(self: DeadLetterQueue, body: str, **kwargs: Any) -> str:
        armed["dlq"].fire(kwargs["request_id"], ConnectionError("SQS SendMessage failed"))
        return real_send(self, body, **kwargs)

    def tracker_ended(self: TrackerEndedService, event: dict[str, Any], context: Any) -> Any:
        request_id = TrackerState.model_validate_json(event["detail"]["input"]).job.request_id
        armed["tracker_ended"].fire(request_id, ConnectionError("TrackerEnded failed"))
        answer = real_tracker_ended(self, event, context)
        armed["tracker_ended_after"].fire(request_id, TimeoutError("TrackerEnded timed out"))
        return answer

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TrackerEndedService, "handle", tracker_ended)
        patch.setattr(JobLedger, "record_created", record_created)
        patch.setattr(TrackerStarter, "start", start)
        patch.setattr(OutcomePublisher, "publish", publish)
        patch.setattr(JobPoller, "poll", poll)
        patch.setattr(DeadLetterQueue, "send", send)
        yield armed


# ------------------------------------------------------------------ the run
@dataclass
class ScenarioResult:
    scenario: Scenario
    fault: Fault | None
    listing_fault: Fault | None
    creates: int
    report: InvariantReport
    # GETs of the scenario's pipeline itself (Matatika's view with its latest job).
    pipeline_views: int = 0

    @property
    def verdict(self) -> Verdict:
        return self.report.verdicts[self.scenario.request_id]


@dataclass
class FaultRun:
    """Everything one run of many scenarios leaves behind, for the tests to judge."""

    results: dict[str, ScenarioResult]
    report: InvariantReport
    messages_sent: int
    seconds: float
    aws_fired: dict[str, list[str]]


# A ceiling, not a timing assertion: a run that goes well ends as soon as every request has
# its outcome and its executions have ended. Under `make test`'s two workers the other
# worker's tests share the cores, and a run stopped at a tight ceiling reports outcomes
# that were only late as lost.
PLAY_TIMEOUT_SECONDS = 600.0


def play(
    harness: Harness, scenarios: list[Scenario], *, timeout: float = PLAY_TIMEOUT_SECONDS
) -> FaultRun:
    started = time.monotonic()
    ids = {s.id for s in scenarios}
    with aws_failures(ids) as armed, pytest.MonkeyPatch.context() as patch:
        patch.setattr(MatatikaProvider, "retry_grace_seconds", MATATIKA_RETRY_GRACE_SECONDS)
        faults, pending = _arrange(harness, scenarios)
        with (
            _installing_job_faults(harness, pending, faults),
            _steering(harness, scenarios, started + timeout) as steering,
        ):
            sent = _send(harness, scenarios)
            _deliver_until_drained(harness, started + timeout, steering)
            keys = [s.request_id for s in scenarios]
            harness.local.wait_for_outcomes(
                keys, timeout=max(1.0, started + timeout - time.monotonic())
            )
            _settle(harness, started + timeout)
    for scenario_id, message_id in steering.sent.items():
        sent[scenario_id].append(message_id)
    requests = [
        RequestUnderTest(
            key=s.request_id,
            message_ids=tuple(sent[s.id]),
            provider=s.provider,
            target=s.target,
        )
        for s in scenarios
    ]
    report = check_invariant(harness, requests)
    results = {
        s.id: ScenarioResult(
            scenario=s,
            fault=faults.get(s.id),
            listing_fault=faults.get(f"{s.id}/listing"),
            creates=harness.emulators[s.provider].creates_received(s.target),
            pipeline_views=sum(
                1
                for r in harness.emulators[s.provider].requests()
                if r["method"] == "GET" and r["path"] == f"/api/pipelines/{s.target}"
            ),
            report=report,
        )
        for s in scenarios
    }
    return FaultRun(
        results=results,
        report=report,
        messages_sent=sum(len(m) for m in sent.values()),
        seconds=time.monotonic() - started,
        aws_fired={name: once.fired for name, once in armed.items()},
    )


def _arrange(
    harness: Harness, scenarios: list[Scenario]
) -> tuple[dict[str, Fault], list[Scenario]]:
    faults: dict[str, Fault] = {}
    pending: list[Scenario] = []
    for scenario in scenarios:
        if scenario.behaviour:
            harness.emulators[scenario.provider].configure_target(
                scenario.target, **scenario.behaviour
            )
        if scenario.listing_fault is not None:
            faults[f"{scenario.id}/listing"] = harness.emulators[scenario.provider].add_fault(
                Fault(method="GET", path=scenario.listing_path(), **scenario.listing_fault)
            )
        if scenario.fault is None:
            continue
        if scenario.fault_path() is None:
            pending.append(scenario)
        else:
            faults[scenario.id] = _add_fault(harness, scenario, None)
    return faults, pending


def _add_fault(harness: Harness, scenario: Scenario, job_id: str | None) -> Fault:
    assert scenario.fault is not None
    fault = Fault(
        method=scenario.fault_method(),
        path=scenario.fault_path(job_id) or "",
        **scenario.fault,
    )
    return harness.emulators[scenario.provider].add_fault(fault)


@contextlib.contextmanager
def _installing_job_faults(
    harness: Harness, pending: list[Scenario], faults: dict[str, Fault]
) -> Iterator[None]:
    """Add the fault of each scenario whose fault path needs the job id the moment its job
    is created: the emulator calls back before it answers the create, so the fault is in
    place before any poll (a watcher thread could fall behind under load and miss it)."""
    lock = threading.Lock()

    def installer(provider: str) -> Callable[[EmulatedJob], None]:
        def install(job: EmulatedJob) -> None:
            with lock:
                for scenario in list(pending):
                    if scenario.provider == provider and scenario.target == job.target:
                        faults[scenario.id] = _add_fault(harness, scenario, job.id)
                        pending.remove(scenario)

        return install

    listeners = {name: installer(name) for name in {s.provider for s in pending}}
    for name, listener in listeners.items():
        harness.emulators[name].add_job_listener(listener)
    try:
        yield
    finally:
        for name, listener in listeners.items():
            harness.emulators[name].remove_job_listener(listener)


def _send(harness: Harness, scenarios: list[Scenario]) -> dict[str, list[str]]:
    """Send every request. Slow creates and the duplicated message go first, so they share
    the first batches and no batch that starts a job-scoped scenario waits on them."""

    def order(scenario: Scenario) -> int:
        if scenario.copies > 1:
            return 0
        slow = scenario.call == "create" and scenario.id.endswith("read-timeout")
        return 1 if slow else 2

    sent: dict[str, list[str]] = {}
    for scenario in sorted(scenarios, key=order):
        body = json.dumps(scenario.request())
        sent[scenario.id] = harness.send(*([body] * scenario.copies))
    return sent


class Steering:
    """Cancels each steered scenario's request once its job has been polled: a cancel
    message on the queue, or an operator's StopExecution of its current tracker."""

    def __init__(self, harness: Harness, scenarios: list[Scenario]) -> None:
        self.harness = harness
        self.pending = {s.id: s for s in scenarios if s.steer is not None}
        self.sent: dict[str, str] = {}  # scenario id -> the cancel message id
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def run(self, deadline: float) -> None:
        while self.pending and not self.stopping.is_set() and time.monotonic() < deadline:
            for scenario in list(self.pending.values()):
                try:
                    if self._polled(scenario):
                        self._cancel(scenario)
                        del self.pending[scenario.id]
                except Exception as exc:  # reported by the run, never a silent thread death
                    self.errors.append(f"{scenario.id}: {type(exc).__name__}: {exc}")
                    del self.pending[scenario.id]
            self.stopping.wait(0.2)

    def _polled(self, scenario: Scenario) -> bool:
        emulator = self.harness.emulators[scenario.provider]
        jobs = [j["id"] for j in emulator.jobs() if j["target"] == scenario.target]
        return bool(jobs) and any(
            r["method"] == "GET" and r["path"].endswith(f"/jobs/{jobs[0]}")
            for r in emulator.requests()
        )

    def _cancel(self, scenario: Scenario) -> None:
        if scenario.steer == "message":
            body = {
                "action": "cancel",
                "request_id": scenario.request_id,
                "reason": f"scenario {scenario.id}",
                "requested_by": CANCELLED_BY,
            }
            (self.sent[scenario.id],) = self.harness.send(json.dumps(body))
            return
        current = TrackerStarter(self.harness.stack.state_machine_arn).current(scenario.request_id)
        assert current is not None, "no tracker execution to stop"
        self.harness.sfn.stop_execution(executionArn=current.arn)


@contextlib.contextmanager
def _steering(harness: Harness, scenarios: list[Scenario], deadline: float) -> Iterator[Steering]:
    steering = Steering(harness, scenarios)
    thread = threading.Thread(target=steering.run, args=(deadline,), name="fault-steering")
    thread.start()
    try:
        yield steering
    finally:
        steering.stopping.set()
        thread.join(timeout=10)
    assert not steering.errors, steering.errors


def _deliver_until_drained(harness: Harness, deadline: float, steering: Steering) -> None:
    """Run CreateJob on the queue, batch after batch, until nothing is left or in flight
    and every steered request has had its cancel."""
    source = harness.local.source
    assert source is not None
    while time.monotonic() < deadline:
        delivered = source.poll_once()
        if not delivered:
            # Pending first: a cancel leaves `pending` only once it is on the queue, so the
            # depth read after an empty `pending` counts it (the other order could read the
            # depth just before the cancel was sent and `pending` just after).
            if not steering.pending and harness.queue_depth() == 0:
                return
            time.sleep(0.2)
    raise AssertionError("the request queue did not drain in time")


def _settle(harness: Harness, deadline: float) -> None:
    """Let executions whose outcome is published finish their last transition."""
    while time.monotonic() < deadline:
        running = [
            e
            for page in harness.sfn.get_paginator("list_executions").paginate(
                stateMachineArn=harness.stack.state_machine_arn, statusFilter="RUNNING"
            )
            for e in page["executions"]
        ]
        if not running:
            return
        time.sleep(0.5)


__all__ = ["FaultRun", "ScenarioResult", "play"]

"""Steering a request after it was sent, for each provider, on the real definition: a cancel
message, an operator's StopExecution, a cancel before the create, racing the create, after the
outcome, twice, racing the job's own end, and a stop while the tracker continues as new.
Each ends in exactly one outcome event, which says who cancelled, why, and whether the job
was stopped at the provider; the emulator shows what became of the job."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from jobrelay import settings
from jobrelay.aws import DynamoJobLedger, StepFunctionsTrackerStarter
from jobrelay.models import TrackerState, execution_name
from jobrelay.polling import JobPoller
from jobrelay.ports import TrackerStarter
from jobrelay_local.emulators.jobs import EmulatedJob

from tests.integration.conftest import Harness, deepset_request, matatika_request, pixxel_request

pytestmark = pytest.mark.integration

PROVIDERS = ("deepset", "pixxel", "matatika")
REQUESTS: dict[str, Callable[[str], dict[str, Any]]] = {
    "deepset": deepset_request,
    "pixxel": pixxel_request,
    "matatika": matatika_request,
}
TARGETS = {
    "deepset": "7d7b2a3c-1e2f-4a5b-8c9d-0e1f2a3b4c5d",
    "pixxel": "wf-1",
    "matatika": "pipe-1",
}
# Only Matatika has a stop (and a delete for a queued job); deepset and Pixxel have none.
STOPS_REMOTELY = {"deepset": False, "pixxel": False, "matatika": True}
# After its first poll a tracked job waits this long: a cancel has to cut the wait short.
LONG_WAIT = {"poll_interval_seconds": 600, "min_poll_seconds": 600}
CANCELLED = "jobrelay.job.cancelled"
SUCCEEDED = "jobrelay.job.succeeded"
OUTCOME_BOUND = 60.0  # generous: how soon is measured in bench/, not asserted here


def wait_for(condition: Callable[[], Any], *, within: float = 30, what: str = "") -> Any:
    """Poll `condition` until it is truthy (returned) or the deadline passes (fails)."""
    deadline = time.monotonic() + within
    while True:
        seen = condition()
        if seen:
            return seen
        assert time.monotonic() < deadline, f"not within {within}s: {what}"
        time.sleep(0.1)


def request(provider: str, request_id: str, **tracking: int) -> dict[str, Any]:
    body = REQUESTS[provider](request_id)
    if tracking:
        body["tracking"] = tracking
    return body


def cancel(request_id: str, reason: str = "no longer needed", by: str = "ops@example"):
    return {"action": "cancel", "request_id": request_id, "reason": reason, "requested_by": by}


def job_of(harness: Harness, provider: str) -> dict[str, Any]:
    (job,) = harness.emulators[provider].jobs()
    return job


def status_gets(harness: Harness, provider: str) -> int:
    return sum(
        1
        for r in harness.emulators[provider].requests()
        if r["method"] == "GET" and "/jobs/" in r["path"]
    )


def current_execution(harness: Harness, request_id: str) -> str:
    current = StepFunctionsTrackerStarter(harness.stack.state_machine_arn).current(request_id)
    assert current is not None
    return current.arn


def waiting(harness: Harness, request_id: str, waits: int = 2) -> bool:
    """The request's first execution has entered its wait `waits` times (the second wait is
    the one after the first poll)."""
    arn = StepFunctionsTrackerStarter(harness.stack.state_machine_arn).execution_arn(
        execution_name(request_id)
    )
    events = harness.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return sum(e["type"] == "WaitStateEntered" for e in events) >= waits


def track(harness: Harness, provider: str, request_id: str, **behaviour: Any) -> None:
    """A long job, created, polled once and waiting for its next poll (10 minutes away)."""
    harness.emulators[provider].configure_target(
        TARGETS[provider], **{"queued": 0.0, "duration": 600.0, **behaviour}
    )
    harness.send(request(provider, request_id, **LONG_WAIT))
    assert harness.deliver()["result"]["batchItemFailures"] == []
    wait_for(lambda: waiting(harness, request_id), what="the tracker waiting after a poll")


def only_outcome(harness: Harness, request_id: str) -> dict[str, Any]:
    """The request's outcome, once its executions ended: the one event it has."""
    event = harness.wait_outcome(request_id, timeout=OUTCOME_BOUND)
    harness.finished_executions()
    events = harness.events_for(request_id)
    assert [e["id"] for e in events] == [event["id"]], [e["type"] for e in events]
    return event


def assert_cancelled(
    event: dict[str, Any], provider: str, *, by: str, reason: str | None, remotely: bool
) -> None:
    data = event["data"]
    assert event["type"] == CANCELLED
    assert data["status"] == "CANCELLED"
    assert data["details"]["cancel"]["requested_by"] == by
    if reason is not None:
        assert data["details"]["cancel"]["reason"] == reason
    assert data["details"]["cancelled_remotely"] is remotely
    assert data["provider"] == provider


def assert_job_after_cancel(harness: Harness, provider: str) -> None:
    job = job_of(harness, provider)
    if STOPS_REMOTELY[provider]:
        assert job["phase"] == "stopped"
        assert job["status"] == "STOPPED"
    else:
        assert job["phase"] == "running"  # nobody could stop it; the event says it may run


# ------------------------------------------------------------------ cancel while tracked
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_cancel_message_ends_a_tracked_job_in_one_cancelled_outcome(harness, provider):
    # Given a long job being tracked, its tracker in a 10-minute wait
    track(harness, provider, "steer-msg")
    polls_before = status_gets(harness, provider)
    # When a cancel message arrives
    sent = time.monotonic()
    harness.send(cancel("steer-msg"))
    result = harness.deliver()["result"]
    assert result["batchItemFailures"] == []
    # Then one cancelled outcome comes, well before the job's own end
    event = only_outcome(harness, "steer-msg")
    assert time.monotonic() - sent < OUTCOME_BOUND
    assert_cancelled(
        event,
        provider,
        by="ops@example",
        reason="no longer needed",
        remotely=STOPS_REMOTELY[provider],
    )
    assert event["data"]["remote_job_id"] == job_of(harness, provider)["id"]
    assert_job_after_cancel(harness, provider)
    # and the tracker was stopped, not left to its wait: one look at the job, no more polls
    assert [e["status"] for e in harness.executions()] == ["ABORTED"]
    assert status_gets(harness, provider) == polls_before + 1


def test_a_cancel_of_a_queued_matatika_job_deletes_it(harness):
    # Given a Matatika job still queued (for 10 minutes), tracked
    track(harness, "matatika", "steer-queued", queued=600.0)
    assert job_of(harness, "matatika")["status"] == "QUEUED"
    # When it is cancelled
    harness.send(cancel("steer-queued"))
    harness.deliver()
    # Then it is deleted at Matatika, and the outcome says it was cancelled remotely
    event = only_outcome(harness, "steer-queued")
    assert_cancelled(event, "matatika", by="ops@example", reason="no longer needed", remotely=True)
    job = job_of(harness, "matatika")
    assert job["deleted"] is True
    deletes = [r for r in harness.emulators["matatika"].requests() if r["method"] == "DELETE"]
    assert [r["status"] for r in deletes] == [204]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_operator_stop_ends_in_one_cancelled_outcome(harness, provider):
    # Given a long job being tracked
    track(harness, provider, "steer-op")
    # When an operator stops its tracker execution (the console, StopExecution)
    harness.sfn.stop_execution(
        executionArn=current_execution(harness, "steer-op"), error="ops.Stop", cause="drain"
    )
    # Then TrackerEnded publishes its one outcome: cancelled by the operator
    event = only_outcome(harness, "steer-op")
    assert_cancelled(
        event,
        provider,
        by="operator (StopExecution)",
        reason=None,
        remotely=STOPS_REMOTELY[provider],
    )
    assert event["data"]["details"]["cancel"]["reason"]
    assert_job_after_cancel(harness, provider)
    # and the outcome links the execution that was stopped
    assert current_execution(harness, "steer-op") in str(event["data"]["links"])


# ------------------------------------------------------------------ before the job exists
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_request_arriving_after_its_cancel_never_creates_a_job(harness, provider):
    # Given a cancel that reaches the queue before its request (no order on a standard queue)
    harness.send(cancel("steer-early", reason="sent by mistake"))
    assert harness.deliver()["result"]["batchItemFailures"] == []
    assert harness.events_for("steer-early") == []
    # When the request arrives
    harness.send(request(provider, "steer-early"))
    assert harness.deliver()["result"]["batchItemFailures"] == []
    # Then it is cancelled without a job: the provider never received a create
    event = only_outcome(harness, "steer-early")
    assert_cancelled(event, provider, by="ops@example", reason="sent by mistake", remotely=False)
    assert event["data"]["details"]["job_created"] is False
    assert event["data"]["remote_job_id"] is None
    assert harness.emulators[provider].creates_received() == 0
    assert harness.emulators[provider].jobs() == []
    assert harness.executions() == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_cancel_racing_the_create_is_found_on_the_first_poll(harness, provider):
    # Given a request whose cancel arrives while its create is at the provider (the job
    # exists, its tracker does not yet: there is nothing to stop)
    emulator = harness.emulators[provider]
    emulator.configure_target(TARGETS[provider], queued=0.0, duration=600.0)
    cancels: list[dict[str, Any]] = []

    def cancel_during_create(job: EmulatedJob) -> None:
        # called before the provider answers the create
        harness.send(cancel("steer-race", reason="raced"))
        delivered = harness.local.source.poll_once() if harness.local.source else None
        assert delivered is not None
        cancels.append(delivered.result)

    emulator.add_job_listener(cancel_during_create)
    try:
        harness.send(request(provider, "steer-race"))
        assert harness.deliver()["result"]["batchItemFailures"] == []
    finally:
        emulator.remove_job_listener(cancel_during_create)
    assert cancels == [{"batchItemFailures": []}]
    # Then the tracker's first poll finds the cancel and ends the request: one outcome
    event = only_outcome(harness, "steer-race")
    assert_cancelled(
        event, provider, by="ops@example", reason="raced", remotely=STOPS_REMOTELY[provider]
    )
    assert emulator.creates_received() == 1
    assert_job_after_cancel(harness, provider)
    # The tracker ended by its own publish, not by a stop
    assert [e["status"] for e in harness.executions()] == ["SUCCEEDED"]


@pytest.fixture
def first_poll_far(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A tracker's first poll is 10 minutes after the create (CreateJob reads it on first use)."""
    monkeypatch.setenv("FIRST_POLL_SECONDS", "600")
    settings.forget_settings()
    yield
    settings.forget_settings()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_cancel_before_the_first_poll_cuts_the_first_wait_short(
    harness, first_poll_far, provider
):
    # Given a job created, its tracker started, and its first poll 10 minutes away
    harness.emulators[provider].configure_target(TARGETS[provider], queued=0.0, duration=600.0)
    harness.send(request(provider, "steer-first"))
    harness.deliver()
    wait_for(lambda: waiting(harness, "steer-first", waits=1), what="the first wait")
    assert status_gets(harness, provider) == 0
    # When a cancel arrives
    harness.send(cancel("steer-first"))
    harness.deliver()
    # Then the tracker is stopped in its wait and the request ends cancelled, once
    event = only_outcome(harness, "steer-first")
    assert_cancelled(
        event,
        provider,
        by="ops@example",
        reason="no longer needed",
        remotely=STOPS_REMOTELY[provider],
    )
    assert_job_after_cancel(harness, provider)
    assert [e["status"] for e in harness.executions()] == ["ABORTED"]


# ------------------------------------------------------------------ after, twice, racing
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_cancel_after_the_outcome_changes_nothing(harness, provider):
    # Given a request that has succeeded
    harness.emulators[provider].configure_target(TARGETS[provider], queued=0.0, duration=0.5)
    harness.send(request(provider, "steer-late"))
    harness.deliver()
    done = only_outcome(harness, "steer-late")
    assert done["type"] == SUCCEEDED
    # When a cancel arrives
    harness.send(cancel("steer-late"))
    assert harness.deliver()["result"]["batchItemFailures"] == []
    # Then nothing changes: no second event, the tracker's execution still succeeded
    assert [e["status"] for e in harness.finished_executions()] == ["SUCCEEDED"]
    assert [e["id"] for e in harness.events_for("steer-late")] == [done["id"]]
    assert job_of(harness, provider)["phase"] == "succeeded"
    # and the cancel is kept in the ledger (status shows it)
    ledger = DynamoJobLedger(harness.stack.table_name, ttl_seconds=3600)
    asked = ledger.cancel_of("steer-late")
    assert asked is not None
    assert asked.requested_by == "ops@example"
    entry = ledger.entry("steer-late")
    assert entry is not None
    assert entry.outcome_id == done["id"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_cancel_delivered_twice_is_one_cancel_and_one_outcome(harness, provider):
    # Given a long job being tracked
    track(harness, provider, "steer-twice")
    # When the same cancel is delivered twice, in one batch (at once)
    harness.send(cancel("steer-twice"), cancel("steer-twice"))
    harness.deliver_all()
    # Then one outcome, with that cancel
    event = only_outcome(harness, "steer-twice")
    assert_cancelled(
        event,
        provider,
        by="ops@example",
        reason="no longer needed",
        remotely=STOPS_REMOTELY[provider],
    )
    assert_job_after_cancel(harness, provider)
    # And a third cancel, with another reason, after the outcome, changes nothing
    harness.send(cancel("steer-twice", reason="again", by="someone else"))
    harness.deliver_all()
    harness.finished_executions()
    assert [e["id"] for e in harness.events_for("steer-twice")] == [event["id"]]
    stops = [r for r in harness.emulators[provider].requests() if r["method"] == "PUT"]
    assert len(stops) == (1 if STOPS_REMOTELY[provider] else 0)


def _created_at(job: dict[str, Any]) -> float:
    return datetime.fromisoformat(job["created_at"].replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("lead", [0.3, 0.0], ids=["just-before-its-end", "at-its-end"])
def test_a_cancel_racing_the_jobs_own_end_ends_in_exactly_one_outcome(harness, provider, lead):
    # Given a job that ends 3 s after it is created, polled every second
    harness.emulators[provider].configure_target(TARGETS[provider], queued=0.0, duration=3.0)
    harness.send(request(provider, "steer-end"))
    harness.deliver()
    wait_for(lambda: status_gets(harness, provider) >= 1, what="the first poll")
    # When the cancel is sent as the job ends (a lead of 0: the moment the provider shows it)
    ends_at = _created_at(job_of(harness, provider)) + 3.0 - lead
    time.sleep(max(0.0, ends_at - time.time()))
    harness.send(cancel("steer-end", reason="race"))
    harness.deliver_all()
    # Then exactly one outcome, whichever won, and it agrees with the provider
    event = only_outcome(harness, "steer-end")
    assert event["type"] in (CANCELLED, SUCCEEDED)
    job = job_of(harness, provider)
    if event["type"] == SUCCEEDED:
        assert job["phase"] == "succeeded"
        assert "cancel" not in event["data"]["details"]
    else:
        assert event["data"]["details"]["cancel"]["reason"] == "race"
        stopped = job["phase"] == "stopped"
        assert event["data"]["details"]["cancelled_remotely"] is stopped
        assert stopped is STOPS_REMOTELY[provider]


# ------------------------------------------------------------------ continue-as-new
@pytest.fixture
def short_executions(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Trackers continue as new after 2 rounds (PollJobStatus reads it on first use)."""
    monkeypatch.setenv("ROUNDS_PER_EXECUTION", "2")
    settings.forget_settings()
    yield
    settings.forget_settings()


class HeldContinuation:
    """The first ContinueAsNew step holds, mid-step, until the test lets it go on: before it
    starts the next generation, or after (the step still running, the next one started)."""

    def __init__(self, start_first: bool) -> None:
        self.start_first = start_first
        self.held = threading.Event()
        self.go = threading.Event()
        self.real = JobPoller.continue_tracking

    def __call__(self, state: TrackerState, starter: TrackerStarter) -> dict[str, object]:
        if self.held.is_set():
            return self.real(state, starter)
        started = self.real(state, starter) if self.start_first else None
        self.held.set()
        self.go.wait(timeout=30)
        return started or self.real(state, starter)


@pytest.mark.parametrize("start_first", [False, True], ids=["before-next", "after-next"])
def test_an_operator_stop_while_continuing_as_new_ends_in_one_outcome(
    harness, short_executions, monkeypatch: pytest.MonkeyPatch, start_first
):
    # Given a Matatika job whose tracker is in its ContinueAsNew step (after 2 rounds), the
    # next generation not started yet, or started
    hold = HeldContinuation(start_first)
    monkeypatch.setattr(JobPoller, "continue_tracking", staticmethod(hold))
    harness.emulators["matatika"].configure_target("pipe-1", queued=0.0, duration=600.0)
    harness.send(matatika_request("steer-can"))
    harness.deliver()
    assert hold.held.wait(timeout=30), "the tracker never continued"
    first = StepFunctionsTrackerStarter(harness.stack.state_machine_arn).execution_arn(
        execution_name("steer-can")
    )
    assert harness.sfn.describe_execution(executionArn=first)["status"] == "RUNNING"
    # When an operator stops the generation that is continuing
    harness.sfn.stop_execution(executionArn=first)
    hold.go.set()
    # Then the request ends in one cancelled outcome, the job stopped at Matatika
    event = only_outcome(harness, "steer-can")
    assert_cancelled(event, "matatika", by="operator (StopExecution)", reason=None, remotely=True)
    assert job_of(harness, "matatika")["phase"] == "stopped"
    # and no generation is left running
    statuses = {e["executionArn"]: e["status"] for e in harness.finished_executions()}
    assert statuses[first] == "ABORTED"
    assert "RUNNING" not in statuses.values()

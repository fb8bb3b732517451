"""Cancelling a request wherever it is, and the one outcome it ends in: before its job exists
(none is ever created), while it is tracked (the tracker is stopped, the job stopped where the
provider can), after its outcome (nothing changes); and a tracker that stops or fails before
publishing (TrackerEnded)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jobrelay.creation import JobCreator, QueueMessage, request_key
from jobrelay.errors import ProviderUnavailable
from jobrelay.models import ErrorInfo, JobRef, JobStatus, PollResult, StatusReport, TrackerState
from jobrelay.polling import JobPoller
from jobrelay.ports import CancelRecord, LedgerEntry
from jobrelay.settings import Settings, TrackerEndedSettings
from jobrelay.tracker_ended import TrackerEndedService

from tests.fakes import MemoryDeadLetters, MemoryLedger, MemoryPublisher, MemoryStarter
from tests.unit.test_polling import ScriptedProvider

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CREATE = {"request_id": "r-1", "provider": "matatika", "params": {"pipeline_id": "p-1"}}


class NoCreates(ScriptedProvider):
    """A provider that must not be asked to create anything."""

    def create(self, params: Any) -> Any:
        raise AssertionError("a cancelled request created a job")


def creator(ledger: MemoryLedger, starter: MemoryStarter, publisher: MemoryPublisher) -> JobCreator:
    return JobCreator(
        settings=Settings(),
        provider_for=lambda name: NoCreates(),
        publisher=publisher,
        starter=starter,
        dead_letters=MemoryDeadLetters(),
        ledger=ledger,
        trackers=starter,
        clock=lambda: NOW,
    )


def message(body: dict[str, Any] | str, message_id: str = "m-1") -> QueueMessage:
    text = body if isinstance(body, str) else json.dumps(body)
    return QueueMessage.from_record(message_id, text, sender="AIDAEXAMPLE")


def tracked(request_id: str = "r-1") -> TrackerState:
    job = JobRef(
        request_id=request_id,
        provider="matatika",
        remote_job_id="mj-1",
        created_at=NOW,
        deadline_at=NOW + timedelta(hours=1),
        poll_interval_seconds=30,
    )
    return TrackerState(job=job, poll=PollResult(status=JobStatus.RUNNING, polls=3))


def running() -> StatusReport:
    return StatusReport(status=JobStatus.RUNNING, raw_status="RUNNING")


def asked(reason: str | None = "not needed") -> CancelRecord:
    return CancelRecord("r-1", reason, "ops@example", NOW)


def test_a_cancel_is_keyed_apart_from_its_request():
    body = json.dumps({"action": "cancel", "request_id": "r-1"})
    assert request_key("m-1", body) == "cancel:r-1"
    assert request_key("m-2", json.dumps(CREATE)) == "r-1"


def test_a_request_arriving_after_its_cancel_ends_cancelled_without_a_job():
    ledger, starter, publisher = MemoryLedger(), MemoryStarter(), MemoryPublisher()
    jobs = creator(ledger, starter, publisher)
    # Given a cancel that arrives first (a standard queue keeps no order)
    first = jobs.handle(message({"action": "cancel", "request_id": "r-1", "reason": "dup"}))
    assert first.outcome == "cancel_recorded"
    assert publisher.events == []
    # When the request itself arrives
    result = jobs.handle(message({**CREATE, "action": "create"}, "m-2"))
    # Then no job is created, no tracker started, and the outcome is `cancelled`
    assert result.outcome == "cancelled"
    assert starter.started == []
    (event,) = publisher.events
    assert event.type == "jobrelay.job.cancelled"
    assert event.data.details["job_created"] is False
    assert event.data.details["cancel"]["requested_by"] == "AIDAEXAMPLE"
    assert event.data.details["cancel"]["reason"] == "dup"
    entry = ledger.entry("r-1")
    assert entry is not None
    assert entry.outcome_type == "jobrelay.job.cancelled"


def test_a_cancel_of_a_tracked_request_stops_its_tracker():
    ledger, starter, publisher = MemoryLedger(), MemoryStarter(), MemoryPublisher()
    arn, _ = starter.start(tracked())
    ledger.entries["r-1"] = LedgerEntry("r-1", "mj-1", {}, NOW, NOW)
    result = creator(ledger, starter, publisher).handle(
        message({"action": "cancel", "request_id": "r-1", "requested_by": "ops", "reason": "why"})
    )
    assert result.execution_arn == arn
    assert starter.stops == [(arn, "jobrelay.Cancelled", "cancelled by ops: why")]
    assert publisher.events == []  # the stopped tracker's end publishes (TrackerEnded)


def test_a_cancel_after_the_outcome_changes_nothing_but_is_kept():
    ledger, starter, publisher = MemoryLedger(), MemoryStarter(), MemoryPublisher()
    starter.start(tracked())
    ledger.entries["r-1"] = LedgerEntry(
        "r-1", "mj-1", {}, NOW, NOW, outcome_type="jobrelay.job.succeeded", outcome_id="e-1"
    )
    result = creator(ledger, starter, publisher).handle(
        message({"action": "cancel", "request_id": "r-1"})
    )
    assert result.execution_arn is None
    assert starter.stops == []
    assert publisher.events == []
    assert ledger.cancel_of("r-1") is not None


def test_a_cancel_delivered_twice_is_one_cancel():
    ledger, starter, publisher = MemoryLedger(), MemoryStarter(), MemoryPublisher()
    jobs = creator(ledger, starter, publisher)
    jobs.handle(message({"action": "cancel", "request_id": "r-1", "reason": "first"}))
    jobs.handle(message({"action": "cancel", "request_id": "r-1", "reason": "second"}, "m-2"))
    kept = ledger.cancel_of("r-1")
    assert kept is not None
    assert kept.reason == "first"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "cancel"}, "request_id"),
        ({"action": "cancel", "request_id": "r-1", "reason": "x" * 1001}, "reason"),
        ({"action": "cancel", "request_id": "r-1", "provider": "matatika"}, "provider"),
    ],
)
def test_a_malformed_cancel_is_rejected_under_its_own_key(body, field):
    ledger, starter, publisher = MemoryLedger(), MemoryStarter(), MemoryPublisher()
    jobs = creator(ledger, starter, publisher)
    result = jobs.handle(message(body))
    assert result.outcome == "rejected"
    (event,) = publisher.events
    assert field in {p["field"] for p in event.data.error.problems}  # type: ignore[union-attr]
    # never the outcome of the request it names
    assert event.data.request_id != "r-1"
    assert jobs.dead_letters.sent == [json.dumps(body)]  # type: ignore[attr-defined]
    assert ledger.cancel_of("r-1") is None


def test_a_message_of_an_unknown_action_is_rejected_naming_it():
    publisher = MemoryPublisher()
    result = creator(MemoryLedger(), MemoryStarter(), publisher).handle(
        message({"action": "delete", "request_id": "r-1"})
    )
    assert result.outcome == "rejected"
    assert publisher.events[0].data.error is not None
    assert [p["field"] for p in publisher.events[0].data.error.problems] == ["action"]


def test_a_poll_round_that_finds_a_cancel_stops_the_job_and_ends_cancelled():
    provider = ScriptedProvider(running())
    poller = JobPoller(provider_for=lambda name: provider, cancel_of=lambda rid: asked())
    ended = poller.poll(tracked())
    assert ended.poll.status is JobStatus.CANCELLED
    assert ended.poll.terminal
    assert ended.poll.cancelled_remotely is True
    assert provider.cancelled == ["mj-1"]
    assert ended.poll.details["cancel"] == {
        "requested_by": "ops@example",
        "reason": "not needed",
        "requested_at": NOW.isoformat(),
    }


def test_a_cancelled_job_whose_provider_cannot_cancel_may_still_run():
    provider = ScriptedProvider(running(), can_cancel=False)
    ended = JobPoller(provider_for=lambda name: provider, cancel_of=lambda rid: asked()).poll(
        tracked()
    )
    assert ended.poll.status is JobStatus.CANCELLED
    assert ended.poll.cancelled_remotely is False
    assert provider.cancelled == []


def test_a_cancel_racing_the_jobs_own_end_reports_the_end():
    done = StatusReport(status=JobStatus.SUCCEEDED, raw_status="COMPLETE")
    provider = ScriptedProvider(done)
    ended = JobPoller(provider_for=lambda name: provider, cancel_of=lambda rid: asked()).poll(
        tracked()
    )
    assert ended.poll.status is JobStatus.SUCCEEDED
    assert provider.cancelled == []


class FailingStops(ScriptedProvider):
    """A provider whose stops fail as scripted (an error raised, else acknowledged)."""

    def __init__(self, *reports: StatusReport, stops: list[Exception | None]) -> None:
        super().__init__(*reports)
        self.stops = stops

    def cancel(self, job: JobRef) -> bool:
        self.cancelled.append(job.remote_job_id)
        failure = self.stops.pop(0)
        if failure is not None:
            raise failure
        return True


def test_a_cancels_stop_that_fails_once_is_sent_again_and_stops_the_job():
    # Given a running job whose first stop answers 500 (no retry of its own at a cancel)
    provider = FailingStops(
        running(), running(), stops=[ProviderUnavailable("matatika: PUT answered 500"), None]
    )
    poller = JobPoller(provider_for=lambda name: provider, cancel_of=lambda rid: asked())
    # When a poll round finds the cancel
    ended = poller.poll(tracked())
    # Then the stop is sent again, and the job is stopped remotely
    assert provider.cancelled == ["mj-1", "mj-1"]
    assert ended.poll.status is JobStatus.CANCELLED
    assert ended.poll.cancelled_remotely is True
    assert "cancel_error" not in ended.poll.details


def test_a_cancels_stop_that_keeps_failing_ends_tracking_saying_the_job_may_run():
    down = ProviderUnavailable("matatika: PUT answered 503")
    provider = FailingStops(running(), running(), running(), stops=[down, down])
    ended = JobPoller(provider_for=lambda name: provider).cancelled(tracked(), asked())
    assert provider.cancelled == ["mj-1", "mj-1"]  # twice, then tracking ends
    assert ended.poll.status is JobStatus.CANCELLED
    assert ended.poll.cancelled_remotely is False
    assert ended.poll.details["cancel_error"] == "matatika: PUT answered 503"


def test_a_cancels_stop_that_failed_slowly_is_not_sent_again():
    # Given a stop that failed only after every HTTP attempt timed out (30 s of the clock)
    down = ProviderUnavailable("matatika: PUT timed out")
    provider = FailingStops(running(), running(), stops=[down, None])
    ticks = iter(range(1000))  # each reading of the clock is 30 s after the last
    poller = JobPoller(
        provider_for=lambda name: provider,
        clock=lambda: NOW + timedelta(seconds=30 * next(ticks)),
    )
    # When the cancel ends tracking
    ended = poller.cancelled(tracked(), asked())
    # Then the outcome is published with what is known, without a second stop
    assert provider.cancelled == ["mj-1"]
    assert ended.poll.cancelled_remotely is False


def test_a_cancel_that_finds_its_job_already_stopped_is_that_cancels_outcome():
    # Given a job its cancel's other path stopped a moment ago (the poll round in flight when
    # the tracker was stopped): Matatika shows it STOPPED, as if it had stopped it itself
    stopped = StatusReport(
        status=JobStatus.CANCELLED,
        raw_status="STOPPED",
        details={"stopped_by": "provider"},
        error=ErrorInfo(code="STOPPED_AT_PROVIDER", message="jobrelay did not cancel it"),
    )
    provider = ScriptedProvider(stopped)
    # When TrackerEnded ends the request for the cancel
    ended = JobPoller(provider_for=lambda name: provider).cancelled(tracked(), asked())
    # Then the outcome is the cancel's: who asked, the job stopped remotely, no second stop
    assert ended.poll.status is JobStatus.CANCELLED
    assert ended.poll.cancelled_remotely is True
    assert ended.poll.details["cancel"]["requested_by"] == "ops@example"
    assert "stopped_by" not in ended.poll.details
    assert ended.poll.error is None
    assert provider.cancelled == []


# ------------------------------------------------------------------ TrackerEnded
class Published:
    def __init__(self) -> None:
        self.states: list[TrackerState] = []

    def __call__(self, state: TrackerState, context: Any) -> dict[str, Any]:
        self.states.append(state)
        return {"event_type": f"jobrelay.job.{state.poll.status.lower()}"}


def ended_service(provider: ScriptedProvider, ledger: MemoryLedger, starter: MemoryStarter):
    @contextmanager
    def providers(settings):
        yield lambda name: provider

    published = Published()
    service = TrackerEndedService(
        settings=TrackerEndedSettings.model_construct(events_topic_arn="t", idempotency_table="t"),
        ledger=ledger,
        trackers_for=lambda arn: starter,
        publish=published,
        providers=providers,
        clock=lambda: NOW,
    )
    return service, published


def status_change(arn: str, status: str, **detail: Any) -> dict[str, Any]:
    return {
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "detail": {
            "executionArn": arn,
            "stateMachineArn": MemoryStarter().state_machine_arn,
            "status": status,
            "input": tracked().model_dump_json(),
            **detail,
        },
    }


def test_an_operator_stop_cancels_the_job_and_publishes_cancelled_once_recorded():
    ledger, starter = MemoryLedger(), MemoryStarter()
    arn, _ = starter.start(tracked())
    starter.stop(arn, error="", cause="")
    provider = ScriptedProvider(running())
    service, published = ended_service(provider, ledger, starter)
    answer = service.handle(status_change(arn, "ABORTED", cause="maintenance"), None)
    assert answer["handled"] == "published"
    (state,) = published.states
    assert state.poll.status is JobStatus.CANCELLED
    assert state.poll.cancelled_remotely is True
    assert state.execution_arn == arn
    assert state.poll.details["cancel"]["requested_by"] == "operator (StopExecution)"
    assert state.poll.details["cancel"]["reason"] == "maintenance"
    # kept as the request's cancel: a generation started meanwhile ends on its first poll
    assert ledger.cancel_of("r-1") is not None


def test_a_stop_after_a_cancel_message_says_who_asked():
    ledger, starter = MemoryLedger(), MemoryStarter()
    arn, _ = starter.start(tracked())
    ledger.record_cancel(asked("wrong dataset"))
    service, published = ended_service(ScriptedProvider(running()), ledger, starter)
    service.handle(status_change(arn, "ABORTED"), None)
    assert published.states[0].poll.details["cancel"]["reason"] == "wrong dataset"


def test_a_failed_tracker_ends_failed_and_leaves_the_job_running():
    ledger, starter = MemoryLedger(), MemoryStarter()
    arn, _ = starter.start(tracked())
    provider = ScriptedProvider(running())
    service, published = ended_service(provider, ledger, starter)
    service.handle(status_change(arn, "TIMED_OUT", error="States.Timeout"), None)
    (state,) = published.states
    assert state.poll.status is JobStatus.FAILED
    assert state.poll.error is not None
    assert state.poll.error.code == "TRACKER_TIMED_OUT"
    assert state.poll.details["remote_job_may_still_run"] is True
    assert provider.cancelled == []


def test_a_tracker_that_ended_after_publishing_publishes_nothing_more():
    ledger, starter = MemoryLedger(), MemoryStarter()
    arn, _ = starter.start(tracked())
    ledger.record_outcome("r-1", event_type="jobrelay.job.succeeded", event_id="e-1")
    service, published = ended_service(ScriptedProvider(), ledger, starter)
    assert service.handle(status_change(arn, "FAILED"), None)["handled"] == "already_published"
    assert published.states == []


def test_a_succeeded_generation_is_no_failure():
    ledger, starter = MemoryLedger(), MemoryStarter()
    arn, _ = starter.start(tracked())
    service, published = ended_service(ScriptedProvider(), ledger, starter)
    assert service.handle(status_change(arn, "SUCCEEDED"), None)["handled"] == "ignored"
    assert published.states == []


def test_a_stop_while_continuing_as_new_stops_the_next_generation_too():
    ledger, starter = MemoryLedger(), MemoryStarter()
    first, _ = starter.start(tracked())
    following = tracked().model_copy(
        update={"job": tracked().job.model_copy(update={"generation": 1})}
    )
    second, _ = starter.start(following)
    starter.stop(first, error="", cause="")
    service, published = ended_service(ScriptedProvider(running()), ledger, starter)
    assert service.handle(status_change(first, "ABORTED"), None)["handled"] == "continued"
    assert starter.current("r-1") is not None
    assert starter.statuses[second] == "ABORTED"
    assert published.states == []  # the next generation's own stop publishes

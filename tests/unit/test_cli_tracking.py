"""Where a request stands (`jobrelay status`, `jobs`, `watch`), read from in-memory Step
Functions and ledger fakes that answer as the services do."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from jobrelay.models import JobRef, JobStatus, PollResult, TrackerState, execution_name
from jobrelay.ports import CancelRecord, LedgerEntry
from jobrelay_cli.tracking import Tracking
from jobrelay_cli.watch_view import Watch

MACHINE = "arn:aws:states:eu-west-1:123456789012:stateMachine:JobTracker"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def execution_arn(request_id: str, generation: int = 0) -> str:
    prefix, _, machine = MACHINE.partition(":stateMachine:")
    return f"{prefix}:execution:{machine}:{execution_name(request_id, generation)}"


def document(
    request_id: str,
    status: JobStatus = JobStatus.RUNNING,
    *,
    provider: str = "matatika",
    connection: str = "",
    polls: int = 0,
    polled_at: datetime | None = None,
    next_poll_seconds: int = 30,
    generation: int = 0,
) -> TrackerState:
    job = JobRef(
        request_id=request_id,
        provider=provider,
        connection=connection,
        remote_job_id=f"job-{request_id}",
        created_at=T0,
        deadline_at=T0 + timedelta(hours=2),
        poll_interval_seconds=30,
        generation=generation,
    )
    poll = PollResult(
        status=status,
        raw_status=status.value.lower(),
        terminal=status.terminal,
        polls=polls,
        polled_at=polled_at,
        next_poll_seconds=next_poll_seconds,
    )
    return TrackerState(job=job, poll=poll)


NOT_FOUND: Any = {"Error": {"Code": "ExecutionDoesNotExist", "Message": "Does Not Exist"}}


class FakeStepFunctions:
    """Step Functions' reads; a history in the order asked, or oldest first (as moto)."""

    def __init__(self, *, honours_reverse_order: bool = True, page_size: int = 2) -> None:
        self.executions: dict[str, dict[str, Any]] = {}
        self.histories: dict[str, list[dict[str, Any]]] = {}
        self.honours_reverse_order = honours_reverse_order
        self.page_size = page_size

    def start(self, state: TrackerState, *, at: datetime = T0) -> str:
        arn = execution_arn(state.job.request_id, state.job.generation)
        self.executions[arn] = {
            "executionArn": arn,
            "stateMachineArn": MACHINE,
            "status": "RUNNING",
            "startDate": at,
            "input": state.model_dump_json(),
        }
        self.histories[arn] = [{"id": 1, "type": "ExecutionStarted", "timestamp": at}]
        return arn

    def exit_state(self, arn: str, name: str, output: str, at: datetime) -> None:
        events = self.histories[arn]
        events.append({"id": len(events) + 1, "type": "TaskStateEntered", "timestamp": at})
        events.append(
            {
                "id": len(events) + 1,
                "type": "TaskStateExited",
                "timestamp": at,
                "stateExitedEventDetails": {"name": name, "output": output},
            }
        )

    def poll(self, arn: str, state: TrackerState, at: datetime) -> None:
        self.exit_state(arn, "PollJobStatus", state.model_dump_json(), at)

    def close(self, arn: str, status: str, at: datetime, output: dict[str, Any]) -> None:
        self.executions[arn].update(status=status, stopDate=at, output=json.dumps(output))

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        if executionArn not in self.executions:
            raise ClientError(NOT_FOUND, "DescribeExecution")
        return dict(self.executions[executionArn])

    def get_execution_history(
        self, executionArn: str, reverseOrder: bool = False, maxResults: int = 100
    ) -> dict[str, Any]:
        if executionArn not in self.histories:
            raise ClientError(NOT_FOUND, "GetExecutionHistory")
        events = list(self.histories[executionArn])
        if reverseOrder and self.honours_reverse_order:
            events.reverse()
        return {"events": events[:maxResults]}

    def list_executions(
        self,
        stateMachineArn: str,
        statusFilter: str | None = None,
        maxResults: int | None = None,
        nextToken: str | None = None,
    ) -> dict[str, Any]:
        listed = sorted(self.executions.values(), key=lambda e: e["startDate"], reverse=True)
        listed = [e for e in listed if statusFilter in (None, e["status"])]
        start = int(nextToken or 0)
        size = min(self.page_size, maxResults or self.page_size)
        page: dict[str, Any] = {"executions": listed[start : start + size]}
        if start + size < len(listed):
            page["nextToken"] = str(start + size)
        return page


@dataclass
class FakeLedger:
    entries: dict[str, LedgerEntry] = field(default_factory=dict)
    cancels: dict[str, CancelRecord] = field(default_factory=dict)

    def entry(self, request_id: str) -> LedgerEntry | None:
        return self.entries.get(request_id)

    def cancel_of(self, request_id: str) -> CancelRecord | None:
        return self.cancels.get(request_id)


@pytest.fixture
def sfn() -> FakeStepFunctions:
    return FakeStepFunctions()


@pytest.fixture
def ledger() -> FakeLedger:
    return FakeLedger()


@pytest.fixture
def tracking(sfn: FakeStepFunctions, ledger: FakeLedger) -> Tracking:
    return Tracking(sfn, MACHINE, ledger, "eu-west-1")


@pytest.mark.parametrize("honours_reverse_order", [True, False])
def test_status_reads_the_latest_poll_of_the_current_generation(ledger, honours_reverse_order):
    # Given a request whose first generation continued as new and whose second has polled twice
    sfn = FakeStepFunctions(honours_reverse_order=honours_reverse_order)
    tracking = Tracking(sfn, MACHINE, ledger, "eu-west-1")
    first = sfn.start(document("r1"))
    sfn.poll(first, document("r1", polls=500, polled_at=T0), T0)
    sfn.close(first, "SUCCEEDED", T0, {"poll": {"continue_as": execution_name("r1", 1)}})
    second = sfn.start(document("r1", polls=500, generation=1), at=T0)
    for polls in (501, 502):
        polled = T0 + timedelta(minutes=polls - 500)
        sfn.poll(second, document("r1", polls=polls, polled_at=polled, generation=1), polled)
    # When its status is read
    reading = tracking.request("r1")
    # Then it is the second generation's newest poll, with the next one after its wait
    assert reading is not None
    assert reading.execution_arn == second
    assert reading.execution_status == "RUNNING"
    assert (reading.provider, reading.remote_job_id) == ("matatika", "job-r1")
    assert (reading.status, reading.raw_status, reading.polls) == ("RUNNING", "running", 502)
    assert reading.last_poll_at == T0 + timedelta(minutes=2)
    assert reading.next_poll_at == T0 + timedelta(minutes=2, seconds=30)
    assert reading.deadline_at == T0 + timedelta(hours=2)
    assert reading.outcome is None
    assert reading.console_url == (
        "https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1"
        f"#/v2/executions/details/{second}"
    )


def test_a_tracked_request_shows_its_connection_or_its_providers_default(sfn, tracking):
    # Given a job created through a named connection, and one tracked since before connections
    sfn.start(document("named", provider="pixxel", connection="geo-team"))
    sfn.start(document("older", provider="pixxel"))
    # When they are read
    named, older = tracking.request("named"), tracking.request("older")
    # Then each shows the connection its polls and cancels go through
    assert named is not None
    assert older is not None
    assert named.as_json()["connection"] == "geo-team"
    assert older.as_json()["connection"] == "pixxel"
    assert named.waiting is None
    assert [r.connection for r in tracking.in_flight()] == ["geo-team", "pixxel"]


def test_status_before_the_first_poll_reads_the_execution_input(sfn, tracking):
    sfn.start(document("r2", JobStatus.QUEUED, next_poll_seconds=10), at=T0)
    reading = tracking.request("r2")
    assert reading is not None
    assert (reading.status, reading.polls, reading.last_poll_at) == ("QUEUED", 0, None)
    assert reading.next_poll_at == T0 + timedelta(seconds=10)


def test_status_of_a_published_request_shows_its_outcome_and_no_next_poll(sfn, tracking):
    # Given an execution that polled the job's end and published (no ledger record of it yet)
    arn = sfn.start(document("r3"))
    sfn.poll(arn, document("r3", JobStatus.SUCCEEDED, polls=3, polled_at=T0), T0)
    sfn.exit_state(arn, "PublishOutcome", json.dumps({"event_type": "x", "event_id": "y"}), T0)
    published = {"event_id": "ev-r3", "event_type": "jobrelay.job.succeeded", "status": "SUCCEEDED"}
    sfn.close(arn, "SUCCEEDED", T0, published)
    reading = tracking.request("r3")
    assert reading is not None
    assert reading.status == "SUCCEEDED"
    assert reading.next_poll_at is None
    assert reading.as_json()["outcome"] == {"type": "jobrelay.job.succeeded", "id": "ev-r3"}


def test_status_of_a_cancelled_request_shows_the_cancel_and_the_ledgers_outcome(
    sfn, ledger, tracking
):
    # Given a tracked request an operator cancelled: the tracker stopped, the outcome published
    arn = sfn.start(document("r4"))
    sfn.poll(arn, document("r4", polls=1, polled_at=T0), T0)
    sfn.close(arn, "ABORTED", T0 + timedelta(seconds=5), {})
    asked = T0 + timedelta(seconds=4)
    ledger.cancels["r4"] = CancelRecord("r4", "not needed", "ops@example", asked)
    ledger.entries["r4"] = LedgerEntry(
        "r4", "job-r4", {}, T0, T0, outcome_type="jobrelay.job.cancelled", outcome_id="ev-r4"
    )
    shown = tracking.request("r4")
    assert shown is not None
    record = shown.as_json()
    assert record["status"] == "CANCELLED"
    assert record["execution_status"] == "ABORTED"
    assert record["next_poll_at"] is None
    assert record["cancel"] == {
        "reason": "not needed",
        "requested_by": "ops@example",
        "requested_at": asked.isoformat(),
    }
    assert record["outcome"] == {"type": "jobrelay.job.cancelled", "id": "ev-r4"}


def test_a_request_known_only_to_the_ledger_shows_what_the_ledger_knows(ledger, tracking):
    ledger.entries["r5"] = LedgerEntry(
        "r5", None, {}, T0, None, outcome_type="jobrelay.job.rejected", outcome_id="ev-r5"
    )
    ledger.cancels["ghost"] = CancelRecord("ghost", None, "jobrelay cli", T0)
    rejected, ghost = tracking.request("r5"), tracking.request("ghost")
    assert rejected is not None
    assert ghost is not None
    assert rejected.execution_arn is None
    assert rejected.status == "REJECTED"
    assert rejected.as_json()["outcome"] == {"type": "jobrelay.job.rejected", "id": "ev-r5"}
    assert ghost.status is None
    assert ghost.outcome is None
    assert ghost.cancel == CancelRecord("ghost", None, "jobrelay cli", T0)


def test_an_id_nobody_knows_has_no_status(sfn, tracking):
    sfn.start(document("someone-else"))
    assert tracking.request("nobody") is None


def test_jobs_in_flight_lists_each_running_request_once(sfn, tracking):
    # Given three running requests over several list pages, one of them in two generations at
    # once (continuing as new), and one request that ended
    for request_id, provider in (("a", "matatika"), ("b", "pixxel"), ("c", "matatika")):
        sfn.start(document(request_id, provider=provider))
    sfn.start(document("c", provider="matatika", polls=500, generation=1))
    ended = sfn.start(document("d"))
    sfn.close(ended, "SUCCEEDED", T0, {"event_type": "jobrelay.job.succeeded", "event_id": "e"})
    # When the jobs in flight are read, for all providers and for one
    every = tracking.in_flight()
    matatika = tracking.in_flight("matatika")
    # Then each running request is there once, at its newest generation
    assert [(r.request_id, r.generation) for r in every] == [("a", 0), ("b", 0), ("c", 1)]
    assert [r.request_id for r in matatika] == ["a", "c"]
    line = every[0].as_json()
    assert {"request_id", "provider", "remote_job_id", "status", "next_poll_at"} <= line.keys()
    assert line["next_poll_at"] == (T0 + timedelta(seconds=30)).isoformat()


def test_watch_moves_a_request_that_ended_to_the_ended_rows_with_its_outcome(sfn, tracking):
    # Given a watch started while two requests run
    one, two = sfn.start(document("w1")), sfn.start(document("w2"))
    watch = Watch(tracking, started=T0 + timedelta(minutes=1))
    watch.refresh()
    assert sorted(watch.running) == ["w1", "w2"]
    # When one publishes its outcome, and a short request starts and ends between refreshes,
    # and another's first generation continues as new
    done = {"event_type": "jobrelay.job.succeeded", "event_id": "ev-w1"}
    sfn.close(one, "SUCCEEDED", T0 + timedelta(minutes=2), done)
    short = sfn.start(document("w3"), at=T0 + timedelta(minutes=2))
    failed = {"event_type": "jobrelay.job.failed", "event_id": "ev-w3"}
    sfn.close(short, "SUCCEEDED", T0 + timedelta(minutes=3), failed)
    sfn.start(document("w2", generation=1), at=T0 + timedelta(minutes=3))
    sfn.close(two, "SUCCEEDED", T0 + timedelta(minutes=3), {})
    watch.refresh()
    # Then the two that ended show their outcome; the continued one is still in flight
    assert list(watch.running) == ["w2"]
    assert {rid: r.outcome and r.outcome.type for rid, r in watch.ended.items()} == {
        "w1": "jobrelay.job.succeeded",
        "w3": "jobrelay.job.failed",
    }
    table = watch.table(T0 + timedelta(minutes=3))
    assert table.row_count == 3
    assert list(table.columns[5].cells) == ["in 30s", "", ""]  # w2's next poll, then the ended

"""CreateJob in-process against the template's resources in moto and the emulators on
loopback: per-record outcomes, batch item failures, the DLQ and idempotency."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from jobrelay_local.emulators import Fault

from tests.integration.conftest import (
    Harness,
    body_of,
    deepset_request,
    matatika_request,
    pixxel_request,
)

pytestmark = pytest.mark.integration


def test_mixed_batch_fails_only_the_transient_record(harness: Harness):
    # Given a good request, an invalid one and one whose provider is briefly down
    harness.emulators["matatika"].add_fault(Fault(method="POST", path="/jobs$", status=[503]))
    good, invalid, transient = harness.send(
        pixxel_request("good-1"),
        {"request_id": "bad-1", "provider": "deepset", "params": {"name": ""}},
        matatika_request("busy-1"),
    )
    # When CreateJob handles the batch
    delivery = harness.deliver()
    # Then only the transient record is reported for retry
    failures = [f["itemIdentifier"] for f in delivery["result"]["batchItemFailures"]]
    assert failures == [transient]
    # and the invalid one got exactly one rejected event naming its fields
    rejected = harness.events_for("bad-1")
    assert [e["type"] for e in rejected] == ["jobrelay.job.rejected"]
    fields = {p["field"] for p in rejected[0]["data"]["error"]["problems"]}
    assert {"params.workspace_id", "params.pipeline_id", "params.name"} <= fields
    # and sits in the DLQ with its reason
    dead = harness.dead_letters()
    assert [body_of(m)["request_id"] for m in dead] == ["bad-1"]
    attributes = dead[0]["MessageAttributes"]
    assert attributes["jobrelay_error_code"]["StringValue"] == "REQUEST_INVALID"
    assert "params.name" in attributes["jobrelay_reason"]["StringValue"]
    assert attributes["jobrelay_source_message_id"]["StringValue"] == invalid
    # and the good one has a remote job and a running tracker
    assert harness.emulators["pixxel"].creates_received() == 1
    assert len(harness.executions()) == 1
    # When the provider recovers and SQS delivers the transient record again
    harness.deliver()
    assert harness.emulators["matatika"].creates_received() == 2  # 503 first, then created
    assert len(harness.executions()) == 2
    assert good


def test_message_delivered_three_times_creates_one_job_and_one_execution(harness: Harness):
    request = pixxel_request("dup-1")
    # Given the same request delivered three times in one batch (concurrently)
    harness.send(request, request, request)
    first = harness.deliver()
    # Then copies that raced the first are retried (none is dropped or rejected)
    assert len(first["result"]["batchItemFailures"]) <= 2
    harness.deliver_all()
    harness.send(request)  # and a late fourth copy
    last = harness.deliver()
    assert last["result"]["batchItemFailures"] == []
    assert harness.emulators["pixxel"].creates_received() == 1
    assert len(harness.executions()) == 1
    outcome = harness.wait_outcome("dup-1")
    assert outcome["type"] == "jobrelay.job.succeeded"
    assert len(harness.events_for("dup-1")) == 1


def test_create_recorded_before_tracker_start_is_not_repeated(harness: Harness, monkeypatch):
    # Given the tracker cannot be started right after the job was created
    from jobrelay.aws import StepFunctionsTrackerStarter as TrackerStarter

    real_start = TrackerStarter.start
    calls = {"n": 0}

    def flaky_start(self, state):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("throttled")
        return real_start(self, state)

    monkeypatch.setattr(TrackerStarter, "start", flaky_start)
    harness.send(matatika_request("half-1"))
    first = harness.deliver()
    assert len(first["result"]["batchItemFailures"]) == 1
    # When SQS delivers it again
    harness.deliver()
    # Then the job recorded by the first attempt is adopted, not created again
    assert harness.emulators["matatika"].creates_received() == 1
    assert len(harness.executions()) == 1


def test_ledger_keeps_the_first_attempt_and_answers_with_what_it_held(harness: Harness):
    # The ledger's one write per attempt, against DynamoDB's semantics (moto).
    from jobrelay.aws import DynamoJobLedger as JobLedger
    from jobrelay.errors import JobClaimed

    table = harness.stack.resources["IdempotencyTable"]
    ledger = JobLedger(table, 3600)
    first = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert ledger.begin_attempt("ledger-1", first) is None
    again = ledger.begin_attempt("ledger-1", first + timedelta(minutes=5))
    assert again is not None
    assert (again.create_attempted_at, again.remote_job_id) == (first, None)
    ledger.record_created("ledger-1", "job-9", {"pipeline_id": "p"}, provider="matatika")
    last = ledger.begin_attempt("ledger-1", first + timedelta(minutes=9))
    assert last is not None
    assert (last.create_attempted_at, last.remote_job_id) == (first, "job-9")
    assert last.locator == {"pipeline_id": "p"}
    # and job-9 is ledger-1's: a second request cannot record it as its own
    ledger.record_created("ledger-1", "job-9", {"pipeline_id": "p"}, provider="matatika")
    with pytest.raises(JobClaimed) as claimed:
        ledger.record_created("ledger-2", "job-9", {"pipeline_id": "p"}, provider="matatika")
    assert claimed.value.owner == "ledger-1"
    assert ledger.begin_attempt("ledger-2", first) is None


def test_a_delivery_holds_its_request_until_its_work_is_recorded(harness: Harness):
    # The ledger as CreateJob's idempotency record: one write takes the lease and answers
    # what earlier deliveries did, the cancel included; the job's record gives it up.
    from jobrelay.aws import DynamoJobLedger as JobLedger
    from jobrelay.errors import JobClaimed, RequestInProgress
    from jobrelay.ports import CancelRecord

    ledger = JobLedger(harness.stack.resources["IdempotencyTable"], 3600)
    now = datetime.now(UTC)
    assert ledger.begin("lease-1", now, lease_seconds=60, attempt=True) is None
    with pytest.raises(RequestInProgress):  # a concurrent duplicate
        ledger.begin("lease-1", now, lease_seconds=60, attempt=True)
    # a holder that crashed: its lease runs out
    later = ledger.begin("lease-1", now + timedelta(seconds=61), lease_seconds=60, attempt=True)
    assert later is not None
    assert later.create_attempted_at == now
    ledger.record_created("lease-1", "job-1", {}, provider="pixxel")
    cancel = CancelRecord("lease-1", "not needed", "ops", now)
    assert ledger.record_cancel(cancel) == (cancel, True)
    again = ledger.begin("lease-1", now, lease_seconds=60, attempt=True)
    assert again is not None
    assert (again.remote_job_id, again.cancel) == ("job-1", cancel)
    ledger.release("lease-1")
    assert ledger.begin("lease-1", now, lease_seconds=60, attempt=False) is not None
    # A claimed job refused to another request writes nothing for it (one transaction).
    ledger.begin("lease-2", now, lease_seconds=60, attempt=True)
    with pytest.raises(JobClaimed):
        ledger.record_created("lease-2", "job-1", {}, provider="pixxel")
    entry = ledger.entry("lease-2")
    assert entry is not None
    assert entry.remote_job_id is None
    with pytest.raises(RequestInProgress):  # still its own delivery's, until released
        ledger.begin("lease-2", now, lease_seconds=60, attempt=True)


@pytest.mark.parametrize(
    ("request_body", "provider", "code"),
    [
        (pixxel_request("pix-invalid", workflow_id="wf-invalid"), "pixxel", "PROVIDER_REJECTED"),
        (
            matatika_request("mat-missing", pipeline_id="no-such-pipeline"),
            "matatika",
            "PROVIDER_REJECTED",
        ),
    ],
)
def test_provider_refusal_is_rejected_and_dead_lettered(
    harness: Harness, request_body, provider, code
):
    emulator = harness.emulators[provider]
    target = request_body["params"].get("workflow_id") or request_body["params"]["pipeline_id"]
    if provider == "pixxel":
        emulator.configure_target(target, invalid=True)
    else:
        emulator.configure_target(target, exists=False)
    harness.send(request_body)
    delivery = harness.deliver()
    assert delivery["result"]["batchItemFailures"] == []
    events = harness.events_for(request_body["request_id"])
    assert [e["type"] for e in events] == ["jobrelay.job.rejected"]
    assert events[0]["data"]["error"]["code"] == code
    assert events[0]["data"]["provider"] == provider
    dead = harness.dead_letters()
    assert dead[0]["MessageAttributes"]["jobrelay_error_code"]["StringValue"] == code
    assert harness.executions() == []


def test_deepset_validation_error_names_the_providers_fields(harness: Harness):
    harness.emulators["deepset"].configure_target(
        "7d7b2a3c-1e2f-4a5b-8c9d-0e1f2a3b4c5d", exists=False
    )
    harness.send(deepset_request("ds-missing"))
    harness.deliver()
    event = harness.events_for("ds-missing")[0]
    assert event["type"] == "jobrelay.job.rejected"
    assert event["data"]["error"]["problems"], event


def test_deepset_dry_run_publishes_validated_and_creates_nothing(harness: Harness):
    harness.send(deepset_request("dry-1", dry_run=True))
    harness.deliver()
    events = harness.events_for("dry-1")
    assert [e["type"] for e in events] == ["jobrelay.job.validated"]
    assert events[0]["data"]["metadata"] == {"t": 1}
    assert harness.emulators["deepset"].jobs() == []
    assert harness.executions() == []


def test_matatika_busy_pipeline_is_retried_not_rejected(harness: Harness):
    harness.emulators["matatika"].configure_target("pipe-busy", duration=30)
    harness.send(matatika_request("first", pipeline_id="pipe-busy"))
    harness.deliver()
    harness.send(matatika_request("second", pipeline_id="pipe-busy"))
    delivery = harness.deliver()
    assert len(delivery["result"]["batchItemFailures"]) == 1
    assert harness.events_for("second") == []
    assert harness.dead_letters() == []


def test_non_json_body_is_rejected_under_its_message_id(harness: Harness):
    (message_id,) = harness.send("this is not json")
    harness.deliver()
    event = harness.events_for(message_id)[0]
    assert event["type"] == "jobrelay.job.rejected"
    assert event["data"]["error"]["problems"][0]["field"] == "body"
    assert json.loads(json.dumps(event))["subject"] == f"unknown/request/{message_id}"


def test_two_requests_on_one_workflow_never_share_a_job(harness: Harness):
    # Given request A, whose create is lost on the way (the connection drops before Pixxel
    # acts: ambiguous, so the record is retried and reconciles first)
    harness.emulators["pixxel"].add_fault(
        Fault(action="drop", method="POST", path="/workflows/wf-shared/jobs$")
    )
    harness.send(pixxel_request("share-a", workflow_id="wf-shared"))
    first = harness.deliver()
    assert len(first["result"]["batchItemFailures"]) == 1
    # and request B for the same workflow, which creates a job inside A's window
    harness.send(pixxel_request("share-b", workflow_id="wf-shared"))
    # When both are delivered until the queue drains
    harness.deliver_all()
    # Then each request tracks a job of its own (whichever claimed first)
    jobs = {
        request_id: harness.wait_outcome(request_id)["data"]["remote_job_id"]
        for request_id in ("share-a", "share-b")
    }
    assert jobs["share-a"] != jobs["share-b"]
    # A's lost create, and one job for each request
    assert harness.emulators["pixxel"].creates_received() == 3

"""Outcome events: CloudEvents 1.0, one stable id per request outcome, filterable attributes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from cloudevents.core.formats.json import JSONFormat
from jobrelay.errors import FieldProblem
from jobrelay.events import (
    event_id,
    message_attributes,
    outcome_event,
    rejected_event,
    tracking_error,
)
from jobrelay.models import ErrorInfo, JobRef, JobStatus, PollResult, TrackerState

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def state(status: JobStatus, **poll) -> TrackerState:
    job = JobRef(
        request_id="req-7",
        provider="pixxel",
        remote_job_id="pj-7",
        locator={"workflow_id": "wf"},
        created_at=T0,
        deadline_at=T0 + timedelta(hours=1),
        poll_interval_seconds=30,
        metadata={"team": "geo"},
    )
    return TrackerState(job=job, poll=PollResult(status=status, terminal=status.terminal, **poll))


def test_succeeded_event_is_valid_cloudevents_json():
    event = outcome_event(
        state(JobStatus.SUCCEEDED, raw_status="completed", details={"cost": 3}),
        source="urn:jobrelay:test",
        now=T0 + timedelta(minutes=5),
    )
    parsed = JSONFormat().read(None, event.model_dump_json())
    assert parsed.get_type() == "jobrelay.job.succeeded"
    assert parsed.get_id() == event_id("req-7", "jobrelay.job.succeeded")
    assert parsed.get_source() == "urn:jobrelay:test"
    assert parsed.get_subject() == "pixxel/pj-7"
    data = json.loads(event.model_dump_json())["data"]
    assert data["duration_seconds"] == 300.0
    assert data["details"]["cost"] == 3
    assert data["metadata"] == {"team": "geo"}
    assert data["raw_status"] == "completed"


def test_event_id_is_stable_per_request_outcome():
    first = outcome_event(state(JobStatus.FAILED), source="s", now=T0)
    again = outcome_event(state(JobStatus.FAILED), source="s", now=T0 + timedelta(seconds=9))
    assert first.id == again.id
    assert first.id != outcome_event(state(JobStatus.SUCCEEDED), source="s").id


def test_timed_out_event_says_deadline_and_remote_cancel():
    event = outcome_event(
        state(JobStatus.TIMED_OUT, cancelled_remotely=True, deadline_passed=True), source="s"
    )
    assert event.type == "jobrelay.job.timed_out"
    assert event.data.error is not None
    assert event.data.error.code == "DEADLINE_EXCEEDED"
    assert event.data.details["cancelled_remotely"] is True


def test_caught_tracker_error_ends_as_failed_with_the_lambda_message():
    doc = state(JobStatus.RUNNING)
    doc.error = {
        "Error": "KeyError",
        "Cause": json.dumps({"errorMessage": "'status'", "errorType": "KeyError"}),
    }
    event = outcome_event(doc, source="s")
    assert event.type == "jobrelay.job.failed"
    assert event.data.error == ErrorInfo(code="KeyError", message="'status'")
    assert event.data.details["tracking_failed"] is True


def test_failed_cancel_still_ends_timed_out():
    doc = state(JobStatus.RUNNING, deadline_passed=True)
    doc.error = {"Error": "ProviderUnavailable", "Cause": "down"}
    event = outcome_event(doc, source="s")
    assert event.type == "jobrelay.job.timed_out"
    assert event.data.details["cancelled_remotely"] is False


def test_rejected_event_lists_field_problems_and_attributes():
    event = rejected_event(
        source="s",
        request_id="r-1",
        provider="deepset",
        code="REQUEST_INVALID",
        message="invalid",
        problems=[FieldProblem("params.concurrency", "must be <= 20", "less_than_equal")],
    )
    assert event.type == "jobrelay.job.rejected"
    assert event.data.error is not None
    assert event.data.error.problems == [
        {"field": "params.concurrency", "message": "must be <= 20", "kind": "less_than_equal"}
    ]
    assert message_attributes(event) == {
        "event_type": {"DataType": "String", "StringValue": "jobrelay.job.rejected"},
        "provider": {"DataType": "String", "StringValue": "deepset"},
        "status": {"DataType": "String", "StringValue": "REJECTED"},
    }


def test_tracking_error_tolerates_plain_causes():
    assert tracking_error({"Error": "States.Timeout"}).message == "States.Timeout"
    assert tracking_error({"Error": "X", "Cause": "{broken"}).message == "{broken"


def test_a_tracked_jobs_event_names_its_connection_and_subscribers_can_filter_on_it():
    tracked = state(JobStatus.SUCCEEDED)
    tracked = tracked.model_copy(
        update={"job": tracked.job.model_copy(update={"connection": "geo-team"})}
    )
    event = outcome_event(tracked, source="urn:jobrelay:test", now=T0 + timedelta(minutes=1))
    assert event.data.connection == "geo-team"
    assert message_attributes(event)["connection"] == {
        "DataType": "String",
        "StringValue": "geo-team",
    }
    # A tracker started before connections existed carries none: its provider's default.
    default = outcome_event(state(JobStatus.SUCCEEDED), source="urn:jobrelay:test", now=T0)
    assert default.data.connection == "pixxel"

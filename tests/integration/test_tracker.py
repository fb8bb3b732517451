"""The real JobTracker definition executed by moto's Step Functions interpreter, its tasks
routed to the real handlers, against the emulators: success, failure, transient errors and
the deadline, for each provider."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from jobrelay_local.emulators import Fault

from tests.integration.conftest import Harness, deepset_request, matatika_request, pixxel_request

pytestmark = pytest.mark.integration

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


def run(harness: Harness, provider: str, request_id: str, **behaviour):
    harness.emulators[provider].configure_target(TARGETS[provider], **behaviour)
    harness.send(REQUESTS[provider](request_id))
    delivery = harness.deliver()
    assert delivery["result"]["batchItemFailures"] == []
    return harness.wait_outcome(request_id)


@pytest.mark.parametrize("provider", ["deepset", "pixxel", "matatika"])
def test_job_that_succeeds_ends_in_one_succeeded_event(harness: Harness, provider):
    event = run(harness, provider, f"ok-{provider}", queued=0.2, duration=1.0)
    assert event["type"] == "jobrelay.job.succeeded"
    data = event["data"]
    assert data["status"] == "SUCCEEDED"
    assert data["remote_job_id"]
    assert event["subject"] == f"{provider}/{data['remote_job_id']}"
    assert data["details"]["polls"] >= 1
    if provider == "pixxel":
        assert "cost" in data["details"]
    if provider == "deepset":
        assert data["details"]["executed_requests"] == data["details"]["total_requests"]
    assert len(harness.events_for(f"ok-{provider}")) == 1
    assert [e["status"] for e in harness.finished_executions()] == ["SUCCEEDED"]


@pytest.mark.parametrize("provider", ["deepset", "pixxel", "matatika"])
def test_job_that_fails_ends_in_one_failed_event_with_details(harness: Harness, provider):
    event = run(harness, provider, f"fail-{provider}", queued=0.2, duration=1.0, outcome="failure")
    assert event["type"] == "jobrelay.job.failed"
    data = event["data"]
    assert data["error"]["code"] == "JOB_FAILED"
    if provider == "pixxel":
        assert data["details"]["failed_tasks"]
    if provider == "matatika":
        assert data["details"]["log_tail"]


def test_transient_poll_errors_are_retried_then_succeed(harness: Harness):
    harness.emulators["pixxel"].add_fault(
        Fault(method="GET", path=r"/jobs/[^/]+$", status=[503, 503, 503, 503])
    )
    event = run(harness, "pixxel", "flaky-1", queued=0.0, duration=0.5)
    assert event["type"] == "jobrelay.job.succeeded"


def test_matatika_job_past_its_deadline_is_stopped_and_timed_out(harness: Harness):
    harness.emulators["matatika"].configure_target("pipe-slow", queued=0.0, duration=120)
    harness.send(matatika_request("late-1", pipeline_id="pipe-slow", deadline_seconds=5))
    harness.deliver()
    event = harness.wait_outcome("late-1", timeout=60)
    assert event["type"] == "jobrelay.job.timed_out"
    assert event["data"]["details"]["cancelled_remotely"] is True
    assert event["data"]["error"]["code"] == "DEADLINE_EXCEEDED"
    job = harness.emulators["matatika"].jobs()[0]
    assert job["status"] == "STOPPED"


@pytest.mark.parametrize("provider", ["deepset", "pixxel"])
def test_job_past_its_deadline_times_out_without_a_remote_cancel(harness: Harness, provider):
    # deepset and Pixxel have no cancel endpoint: the deadline ends tracking only
    harness.emulators[provider].configure_target(TARGETS[provider], queued=0.0, duration=120)
    request = REQUESTS[provider](f"late-{provider}")
    request["tracking"] = {"deadline_seconds": 5}
    harness.send(request)
    harness.deliver()
    event = harness.wait_outcome(f"late-{provider}", timeout=60)
    assert event["type"] == "jobrelay.job.timed_out"
    assert event["data"]["details"]["cancelled_remotely"] is False
    assert event["data"]["raw_status"] in {"STARTED", "running"}
    cancels = [
        r for r in harness.emulators[provider].requests() if r["method"] in {"PUT", "DELETE"}
    ]
    assert cancels == []


def test_job_that_vanishes_still_ends_in_an_outcome(harness: Harness):
    harness.emulators["matatika"].add_fault(
        Fault(method="GET", path=r"/api/jobs/[^/]+$", status=[404], count=50)
    )
    event = run(harness, "matatika", "gone-1", queued=0.0, duration=5)
    assert event["type"] == "jobrelay.job.failed"
    assert event["data"]["error"]["code"] == "JOB_NOT_FOUND"


def test_unreadable_status_once_is_retried_by_the_definition(harness: Harness):
    harness.emulators["deepset"].add_fault(
        Fault(action="malformed", method="GET", path=r"/jobs/[^/]+$", count=1)
    )
    event = run(harness, "deepset", "garbled-1", queued=0.0, duration=0.5)
    assert event["type"] == "jobrelay.job.succeeded"

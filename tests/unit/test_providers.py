"""Each adapter against its provider's own request and response shapes (docs/providers.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from jobrelay.errors import (
    ConfigurationError,
    JobNotFound,
    ProviderProtocolError,
    ProviderRejected,
    ProviderUnavailable,
)
from jobrelay.models import JobStatus
from jobrelay.providers import deepset, matatika, pixxel
from jobrelay.providers.deepset import DeepsetParams
from jobrelay.providers.matatika import MatatikaParams
from jobrelay.providers.pixxel import PixxelParams

from tests.unit.conftest import job_ref

WS = "0b6e2c1e-5f1a-4c1e-9a47-1d2b3c4d5e6f"
PIPE = "7d7b2a3c-1e2f-4a5b-8c9d-0e1f2a3b4c5d"
DEEPSET_PARAMS = DeepsetParams.model_validate(
    {
        "workspace_id": WS,
        "name": "eval",
        "pipeline_id": PIPE,
        "execution_mode": "PER_FILE",
        "queries": [{"query": "q1"}, {"query": "q2"}],
    }
)


# ------------------------------------------------------------------ status mapping
@pytest.mark.parametrize(
    ("raw", "status"),
    [("CREATED", "QUEUED"), ("STARTED", "RUNNING"), ("ENDED", "SUCCEEDED"), ("FAILED", "FAILED")],
)
def test_deepset_status_mapping(raw, status):
    report = deepset.map_status(deepset.DeepsetJob(job_id="j", status=raw))
    assert report.status == JobStatus(status)
    assert report.raw_status == raw


def test_deepset_ended_with_a_shortfall_reports_it():
    job = deepset.DeepsetJob(job_id="j", status="ENDED", executed_requests=7, total_requests=10)
    report = deepset.map_status(job)
    assert report.status is JobStatus.SUCCEEDED
    assert report.details["request_shortfall"] == 3
    assert report.progress == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("running", "RUNNING"),
        ("completed", "SUCCEEDED"),
        ("failed", "FAILED"),
        ("paused", "RUNNING"),
    ],
)
def test_pixxel_status_mapping_keeps_unknown_values_running(raw, status):
    report = pixxel.map_status(pixxel.PixxelJob(id="j", status=raw, progress="45%"))
    assert report.status == JobStatus(status)
    assert report.raw_status == raw
    assert report.progress == pytest.approx(0.45)


def test_pixxel_failure_names_the_failed_tasks_and_reports_cost():
    job = pixxel.PixxelJob.model_validate(
        {
            "id": "j",
            "status": "failed",
            "cost": 12,
            "tasks": [
                {"name": "ingest", "status": "completed"},
                {
                    "name": "ndvi",
                    "status": "failed",
                    "err_msg": "band missing",
                    "failure_type": "USER",
                },
            ],
        }
    )
    report = pixxel.map_status(job)
    assert report.details["cost"] == 12
    assert report.details["failed_tasks"] == [
        {"name": "ndvi", "err_msg": "band missing", "failure_type": "USER"}
    ]
    assert report.error is not None
    assert "band missing" in report.error.message


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("QUEUED", "QUEUED"),
        ("RUNNING", "RUNNING"),
        ("COMPLETE", "SUCCEEDED"),
        ("ERROR", "FAILED"),
        ("STOPPED", "CANCELLED"),
        ("UNKNOWN", "RUNNING"),
    ],
)
def test_matatika_status_mapping(raw, status):
    assert matatika.map_status(matatika.MatatikaJob(id="j", status=raw)).status == JobStatus(status)


def test_pixxel_progress_parsing():
    assert pixxel.parse_progress("100%") == 1.0
    assert pixxel.parse_progress(50) == 0.5
    assert pixxel.parse_progress("n/a") is None
    assert pixxel.parse_progress(None) is None


# ------------------------------------------------------------------ deepset adapter
def test_deepset_create_posts_the_documented_body(make_provider):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"job_id": "j-1", "status": "CREATED", "total_requests": 2})

    provider, recorder = make_provider("deepset", handler)
    created = provider.create(DEEPSET_PARAMS)
    sent = recorder.requests[0]
    assert sent.method == "POST"
    assert sent.url.path == f"/api/v2/workspaces/{WS}/jobs"
    assert sent.url.params["dry_run"] == "false"
    assert sent.headers["Authorization"] == "Bearer secret-key"
    body = json.loads(sent.content)
    assert body == {
        "name": "eval",
        "pipeline_id": PIPE,
        "execution_mode": "PER_FILE",
        "queries": [{"query": "q1"}, {"query": "q2"}],
        "concurrency": 3,
    }
    assert created.remote_job_id == "j-1"
    assert created.locator == {"workspace_id": WS}


def test_deepset_422_becomes_field_level_rejection(make_provider):
    detail = {
        "detail": [
            {"loc": ["body", "pipeline_id"], "msg": "pipeline not found", "type": "value_error"}
        ]
    }
    provider, _ = make_provider("deepset", lambda r: httpx.Response(422, json=detail))
    with pytest.raises(ProviderRejected) as caught:
        provider.create(DEEPSET_PARAMS)
    assert caught.value.status_code == 422
    assert [p.as_dict() for p in caught.value.problems] == [
        {"field": "params.pipeline_id", "message": "pipeline not found", "kind": "value_error"}
    ]


def test_deepset_dry_run_validates_without_creating(make_provider):
    provider, recorder = make_provider(
        "deepset",
        lambda r: httpx.Response(201, json={"job_id": "x", "status": "CREATED", "name": "eval"}),
    )
    details = provider.validate(DEEPSET_PARAMS)
    assert recorder.requests[0].url.params["dry_run"] == "true"
    assert details["dry_run"] is True


def test_deepset_get_status_and_vanished_job(make_provider):
    provider, recorder = make_provider(
        "deepset", lambda r: httpx.Response(200, json={"job_id": "j-1", "status": "STARTED"})
    )
    ref = job_ref("deepset", "j-1", workspace_id=WS)
    assert provider.get_status(ref).status is JobStatus.RUNNING
    assert recorder.requests[0].url.path == f"/api/v2/workspaces/{WS}/jobs/j-1"
    gone, _ = make_provider("deepset", lambda r: httpx.Response(404, json={"detail": "nope"}))
    with pytest.raises(JobNotFound):
        gone.get_status(ref)


def test_deepset_malformed_job_is_a_protocol_error(make_provider):
    provider, _ = make_provider("deepset", lambda r: httpx.Response(200, text="<html>"))
    with pytest.raises(ProviderProtocolError):
        provider.get_status(job_ref("deepset", "j-1", workspace_id=WS))
    provider, _ = make_provider("deepset", lambda r: httpx.Response(200, json={"status": "ENDED"}))
    with pytest.raises(ProviderProtocolError):
        provider.get_status(job_ref("deepset", "j-1", workspace_id=WS))


def test_deepset_has_no_cancel(make_provider):
    provider, recorder = make_provider("deepset", lambda r: httpx.Response(500))
    assert provider.can_cancel is False
    assert provider.cancel(job_ref("deepset")) is False
    assert recorder.requests == []


def test_remote_ids_are_path_encoded(make_provider):
    provider, recorder = make_provider(
        "matatika", lambda r: httpx.Response(200, json={"id": "x", "status": "RUNNING"})
    )
    provider.get_status(job_ref("matatika", "../admin?x=1"))
    assert recorder.requests[0].url.raw_path == b"/api/jobs/..%2Fadmin%3Fx%3D1"


# ------------------------------------------------------------------ pixxel adapter
def test_pixxel_create_sends_raw_key_and_project_id(make_provider):
    provider, recorder = make_provider(
        "pixxel",
        lambda r: httpx.Response(200, json={"id": "pj-1", "status": "running", "val_errors": []}),
    )
    created = provider.create(PixxelParams(workflow_id="wf-1", project_id="proj-1"))
    sent = recorder.requests[0]
    assert sent.url.path == "/v0/workflows/wf-1/jobs"
    assert sent.url.params["project_id"] == "proj-1"
    assert sent.headers["Authorization"] == "secret-key"
    assert sent.content == b""
    assert created.remote_job_id == "pj-1"
    assert created.locator == {"workflow_id": "wf-1"}


def test_pixxel_val_errors_on_create_reject_the_request(make_provider):
    body = {
        "id": "pj-2",
        "status": "failed",
        "val_errors": [
            {
                "from": "a",
                "to": "b",
                "err": "E1",
                "reason": "bands mismatch",
                "component_name": "ndvi",
            }
        ],
    }
    provider, _ = make_provider("pixxel", lambda r: httpx.Response(200, json=body))
    with pytest.raises(ProviderRejected) as caught:
        provider.create(PixxelParams(workflow_id="wf", project_id="p"))
    assert caught.value.problems[0].field == "ndvi"
    assert "bands mismatch" in caught.value.message


@pytest.mark.parametrize("status", [400, 403, 404])
def test_pixxel_error_shape_is_a_rejection(make_provider, status):
    body = {"error": {"code": "FORBIDDEN", "message": "project not accessible", "details": None}}
    provider, _ = make_provider("pixxel", lambda r: httpx.Response(status, json=body))
    with pytest.raises(ProviderRejected) as caught:
        provider.create(PixxelParams(workflow_id="wf", project_id="p"))
    assert "project not accessible" in caught.value.message
    assert caught.value.problems[0].kind == "FORBIDDEN"


def test_pixxel_cannot_cancel(make_provider):
    provider, _ = make_provider("pixxel", lambda r: httpx.Response(500))
    assert provider.cancel(job_ref("pixxel", workflow_id="wf")) is False


# ------------------------------------------------------------------ matatika adapter
def test_matatika_busy_pipeline_is_retryable(make_provider):
    spring = {"timestamp": "t", "status": 409, "error": "Conflict", "message": "busy", "path": "/x"}
    provider, recorder = make_provider("matatika", lambda r: httpx.Response(409, json=spring))
    with pytest.raises(ProviderUnavailable) as caught:
        provider.create(MatatikaParams(pipeline_id="p-1"))
    assert caught.value.status_code == 409
    assert len(recorder.requests) == 1


def test_matatika_create_and_spring_rejection(make_provider):
    provider, recorder = make_provider(
        "matatika",
        lambda r: httpx.Response(201, json={"id": "mj-1", "status": "QUEUED", "_links": {}}),
    )
    created = provider.create(MatatikaParams(pipeline_id="p-1"))
    assert recorder.requests[0].url.path == "/api/pipelines/p-1/jobs"
    assert created.remote_job_id == "mj-1"
    spring = {"status": 404, "error": "Not Found", "message": "No pipeline p-2", "path": "/api/..."}
    provider, _ = make_provider("matatika", lambda r: httpx.Response(404, json=spring))
    with pytest.raises(ProviderRejected) as caught:
        provider.create(MatatikaParams(pipeline_id="p-2"))
    assert "No pipeline p-2" in caught.value.message


def test_matatika_failure_attaches_the_log_tail(make_provider):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/logs"):
            return httpx.Response(200, text="\n".join(f"line {i}" for i in range(50)))
        return httpx.Response(
            200, json={"id": "mj", "status": "ERROR", "errorMessage": "tap failed"}
        )

    provider, _ = make_provider("matatika", handler)
    report = provider.get_status(job_ref("matatika", "mj"))
    assert report.status is JobStatus.FAILED
    assert report.error is not None
    assert report.error.message == "tap failed"
    assert report.details["log_tail"][-1] == "line 49"
    assert len(report.details["log_tail"]) == matatika.LOG_TAIL_LINES


def test_matatika_cancel_stops_a_running_job_and_deletes_a_queued_one(make_provider):
    def running(request: httpx.Request) -> httpx.Response:
        return httpx.Response(202) if request.method == "PUT" else httpx.Response(500)

    provider, recorder = make_provider("matatika", running)
    assert provider.cancel(job_ref("matatika", "mj")) is True
    assert (recorder.requests[0].method, recorder.requests[0].url.path) == (
        "PUT",
        "/api/jobs/mj/stopped",
    )

    def queued(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            return httpx.Response(409, json={"message": "not running"})
        if request.method == "GET":
            return httpx.Response(200, json={"id": "mj", "status": "QUEUED"})
        return httpx.Response(204)

    provider, recorder = make_provider("matatika", queued)
    assert provider.cancel(job_ref("matatika", "mj")) is True
    assert [r.method for r in recorder.requests] == ["PUT", "GET", "DELETE"]


def test_matatika_oauth_client_credentials_are_exchanged_and_cached(make_provider):
    tokens = iter(["tok-1", "tok-2"])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": next(tokens), "expires_in": 7200})
        if request.headers["Authorization"] == "Bearer tok-1" and request.url.path.endswith("/b"):
            return httpx.Response(401)
        return httpx.Response(200, json={"id": "mj", "status": "RUNNING"})

    secret = json.dumps(
        {
            "client_id": "cid",
            "client_secret": "cs",
            "token_url": "https://identity.test/oauth/token",
        }
    )
    provider, recorder = make_provider("matatika", handler, key=secret)
    provider.get_status(job_ref("matatika", "a"))
    provider.get_status(job_ref("matatika", "a"))
    assert [r.url.path for r in recorder.requests].count("/oauth/token") == 1
    provider.get_status(job_ref("matatika", "b"))  # 401 with the old token: refresh once
    assert recorder.requests[-1].headers["Authorization"] == "Bearer tok-2"


def test_matatika_bad_secret_is_a_configuration_error(make_provider):
    provider, _ = make_provider("matatika", lambda r: httpx.Response(200), key='{"client_id": 1}')
    with pytest.raises(ConfigurationError):
        provider.get_status(job_ref("matatika"))


# ------------------------------------------------------------------ matatika beyond the create page
ENDED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def errored(attempt: int, max_attempts: int, **fields: object) -> matatika.MatatikaJob:
    return matatika.MatatikaJob.model_validate(
        {
            "id": "mj",
            "status": "ERROR",
            "attempt": attempt,
            "maxAttempts": max_attempts,
            "endTime": "2026-11-23T12:00:00.000Z",
            **fields,
        }
    )


def test_matatika_stopped_that_jobrelay_did_not_cause_says_the_provider_stopped_it():
    report = matatika.map_status(matatika.MatatikaJob(id="mj", status="STOPPED", attempt=1))
    assert report.status is JobStatus.CANCELLED
    assert report.details["stopped_by"] == "provider"
    assert report.details["attempt"] == 1
    assert report.error is not None
    assert report.error.code == "STOPPED_AT_PROVIDER"
    assert "timeout" in report.error.message


def test_matatika_error_with_attempts_left_is_followed_while_its_retry_is_due():
    # Given attempt 1 of 2 ended in ERROR 10 seconds ago
    report = matatika.map_status(errored(1, 2), ENDED + timedelta(seconds=10))
    # Then it is not failed yet: reported running, looked at again soon
    assert report.status is JobStatus.RUNNING
    assert report.raw_status == "ERROR"
    assert report.details["retry_pending"] is True
    assert (report.details["attempt"], report.details["max_attempts"]) == (1, 2)
    assert report.recheck_seconds == matatika.RETRY_RECHECK_SECONDS
    # and near the end of the grace, the next look lands at its end
    late = ENDED + timedelta(seconds=matatika.RETRY_GRACE_SECONDS - 4)
    assert matatika.map_status(errored(1, 2), late).recheck_seconds == 4


def test_matatika_error_whose_retry_never_came_is_failed_and_says_so():
    late = ENDED + timedelta(seconds=matatika.RETRY_GRACE_SECONDS + 1)
    report = matatika.map_status(errored(1, 2), late)
    assert report.status is JobStatus.FAILED
    assert report.details["retry_missing"] is True
    assert report.error is not None
    assert "attempt 1 of 2" in report.error.message
    assert "retry did not start" in report.error.message


def test_matatika_error_of_the_last_attempt_is_failed_at_once():
    report = matatika.map_status(errored(2, 2), ENDED + timedelta(seconds=1))
    assert report.status is JobStatus.FAILED
    assert report.details["attempt"] == 2
    assert report.recheck_seconds is None


def test_matatika_failure_message_comes_from_the_log_tail_without_the_dropped_fields(
    make_provider,
):
    # Given an ERROR job without errorMessage (the field left the docs) and its logs
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/logs"):
            lines = ["tap | Synced 10 records", "tap | ERROR Extractor failed: reset", "Job failed"]
            return httpx.Response(200, text="\n".join(lines))
        return httpx.Response(200, json={"id": "mj", "status": "ERROR", "errorMessage": None})

    provider, recorder = make_provider("matatika", handler)
    report = provider.get_status(job_ref("matatika", "mj"))
    assert report.status is JobStatus.FAILED
    assert report.error is not None
    assert report.error.message == "tap | ERROR Extractor failed: reset"
    assert "enable-task-details" not in recorder.requests[0].headers


def test_matatika_reconciliation_adopts_a_queued_job_the_lists_hide(make_provider):
    # Given an ambiguous create whose job is still QUEUED: the lists leave it out, the
    # pipeline's view embeds it as its latest job
    since = datetime.now(UTC) - timedelta(seconds=30)
    queued = {
        "id": "ours",
        "created": (since + timedelta(seconds=1)).isoformat(),
        "type": "PIPELINE_RUN",
        "status": "QUEUED",
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/pipelines/p-1/jobs":
            page = {"size": 50, "totalElements": 0, "totalPages": 0, "number": 0}
            return httpx.Response(200, json={"_links": {}, "page": page})
        if request.url.path == "/api/pipelines/p-1":
            return httpx.Response(200, json={"id": "p-1", "_embedded": {"latest job": queued}})
        return httpx.Response(500)

    provider, recorder = make_provider("matatika", handler)
    found = provider.find_created(MatatikaParams(pipeline_id="p-1"), since)
    assert found is not None
    assert found.remote_job_id == "ours"
    assert found.report is not None
    assert found.report.status is JobStatus.QUEUED
    # but never one another request has claimed, nor one older than the window
    assert provider.find_created(MatatikaParams(pipeline_id="p-1"), since, exclude={"ours"}) is None
    later = since + timedelta(seconds=5)
    assert provider.find_created(MatatikaParams(pipeline_id="p-1"), later) is None
    assert [r.url.path for r in recorder.requests][:2] == [
        "/api/pipelines/p-1/jobs",
        "/api/pipelines/p-1",
    ]


# ------------------------------------------------------------------ pixxel: light list items
def test_pixxel_reconciliation_takes_a_failed_jobs_details_from_its_own_get(make_provider):
    since = datetime.now(UTC) - timedelta(seconds=30)
    light = {
        "id": "ours",
        "workflow_id": "wf",
        "status": "failed",
        "created_at": (since + timedelta(seconds=1)).isoformat(),
    }
    full = {
        **light,
        "val_errors": [],
        "tasks": [{"name": "ndvi", "status": "failed", "err_msg": "band missing"}],
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v0/workflows/wf/jobs":
            return httpx.Response(200, json={"jobs": [light]})
        return httpx.Response(200, json=full)

    provider, recorder = make_provider("pixxel", handler)
    found = provider.find_created(PixxelParams(workflow_id="wf", project_id="p"), since)
    assert found is not None
    assert found.report is not None
    assert found.report.details["failed_tasks"][0]["err_msg"] == "band missing"
    assert recorder.requests[-1].url.path == "/v0/workflows/wf/jobs/ours"


def test_pixxel_reconciliation_ignores_tasks_a_list_item_carries(make_provider):
    # A running job found in the listing is adopted from the item; tasks there are not read
    since = datetime.now(UTC) - timedelta(seconds=30)
    item = {
        "id": "ours",
        "workflow_id": "wf",
        "status": "running",
        "created_at": (since + timedelta(seconds=1)).isoformat(),
        "tasks": [{"name": "x", "status": "failed", "err_msg": "stale"}],
    }
    provider, recorder = make_provider(
        "pixxel", lambda r: httpx.Response(200, json={"jobs": [item]})
    )
    found = provider.find_created(PixxelParams(workflow_id="wf", project_id="p"), since)
    assert found is not None
    assert found.report is not None
    assert "failed_tasks" not in found.report.details
    assert all(r.url.path == "/v0/workflows/wf/jobs" for r in recorder.requests)

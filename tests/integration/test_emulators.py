"""The provider emulators over real loopback HTTP: lifecycles, error shapes, faults, admin."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from jobrelay_local.emulators import (
    DEFAULT_API_KEY,
    DEFAULT_WORKSPACE_ID,
    Behaviour,
    DeepsetEmulator,
    EmulatorServer,
    Fault,
    MatatikaEmulator,
    PixxelEmulator,
    start_all,
    stop_all,
)

pytestmark = pytest.mark.integration

FAST = Behaviour(duration=0.3, queued=0.05)
WORKSPACE = "6f1c2b8e-0d7e-4c39-9a57-2f4a1c1e9b10"
PIPELINE = "0b8f2f8e-3c1d-4e4f-8a4b-9d2f6c7e1a55"
OTHER_PIPELINE = "9a6d4c2b-1e3f-4a5b-8c7d-0e1f2a3b4c5d"
BEARER = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
DEEPSET_JOBS = f"/api/v2/workspaces/{WORKSPACE}/jobs"
TERMINAL_DEEPSET = {"ENDED", "FAILED"}
TERMINAL_PIXXEL = {"completed", "failed"}
TERMINAL_MATATIKA = {"COMPLETE", "ERROR", "STOPPED"}


def wait_until(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 3.0) -> Any:
    """Poll `read` until `done` holds; returns every value seen, last one last."""
    seen = [read()]
    deadline = time.monotonic() + timeout
    while not done(seen[-1]):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached; last value: {seen[-1]!r}")
        time.sleep(0.02)
        seen.append(read())
    return seen


def deepset_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "nightly eval",
        "pipeline_id": PIPELINE,
        "execution_mode": "PER_FILE",
        "queries": [{"query": f"question {n}"} for n in range(4)],
    }
    return {**body, **overrides}


@pytest.fixture(scope="module")
def deepset() -> Iterator[DeepsetEmulator]:
    with DeepsetEmulator(defaults=FAST) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def pixxel() -> Iterator[PixxelEmulator]:
    with PixxelEmulator(defaults=FAST) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def matatika() -> Iterator[MatatikaEmulator]:
    with MatatikaEmulator(defaults=FAST) as emulator:
        yield emulator


def _client(emulator: EmulatorServer, headers: dict[str, str]) -> Iterator[httpx.Client]:
    emulator.reset()
    with httpx.Client(base_url=emulator.url, headers=headers, timeout=5.0) as client:
        yield client


@pytest.fixture
def ds(deepset: DeepsetEmulator) -> Iterator[httpx.Client]:
    yield from _client(deepset, BEARER)


@pytest.fixture
def px(pixxel: PixxelEmulator) -> Iterator[httpx.Client]:
    # Pixxel's docs send the raw key, without a scheme.
    yield from _client(pixxel, {"Authorization": DEFAULT_API_KEY})


@pytest.fixture
def mt(matatika: MatatikaEmulator) -> Iterator[httpx.Client]:
    yield from _client(matatika, BEARER)


# -- deepset Cloud ------------------------------------------------------------------------------


def test_deepset_job_goes_from_created_to_ended_counting_requests(ds: httpx.Client) -> None:
    # Given a pipeline whose jobs take 0.3 s
    # When a job with four queries is created
    created = ds.post(DEEPSET_JOBS, json=deepset_body())

    # Then it is CREATED, then STARTED, then ENDED with every request executed
    assert created.status_code == 201
    job = created.json()
    assert job["status"] == "CREATED"
    assert (job["executed_requests"], job["total_requests"]) == (0, 4)
    assert job["pipeline_id"] == PIPELINE
    assert job["execution_mode"] == "PER_FILE"
    assert job["created_by"]["user_id"]
    assert job["query_set_id"]
    url = f"{DEEPSET_JOBS}/{job['job_id']}"
    seen = wait_until(lambda: ds.get(url).json(), lambda j: j["status"] in TERMINAL_DEEPSET)
    statuses = [j["status"] for j in seen]
    assert "STARTED" in statuses
    final = seen[-1]
    assert final["status"] == "ENDED"
    assert final["executed_requests"] == final["total_requests"] == 4
    assert final["duration"] == pytest.approx(0.3)
    assert final["executed_at"] is not None


def test_deepset_failure_outcome_ends_failed_short_of_its_requests(
    ds: httpx.Client, deepset: DeepsetEmulator
) -> None:
    # Given a pipeline scripted to fail
    deepset.configure_target(PIPELINE, outcome="failure", name="rag-eval")

    # When a job runs on it
    job = ds.post(DEEPSET_JOBS, json=deepset_body()).json()
    url = f"{DEEPSET_JOBS}/{job['job_id']}"
    final = wait_until(lambda: ds.get(url).json(), lambda j: j["status"] in TERMINAL_DEEPSET)[-1]

    # Then it ends FAILED having executed only part of its requests
    assert final["status"] == "FAILED"
    assert final["pipeline_name"] == "rag-eval"
    assert final["executed_requests"] < final["total_requests"]


def test_deepset_invalid_create_is_refused_with_422_details(ds: httpx.Client) -> None:
    # Given a body breaking several rules of the CreateJob schema
    body = {
        "pipeline_id": "not-a-uuid",
        "execution_mode": "SOMETIMES",
        "queries": [{"filters": {}}],
        "concurrency": 21,
    }

    # When it is posted
    response = ds.post(DEEPSET_JOBS, json=body)

    # Then the 422 names every field in FastAPI's shape
    assert response.status_code == 422
    details = response.json()["detail"]
    by_loc = {tuple(d["loc"]): d for d in details}
    assert set(by_loc) == {
        ("body", "name"),
        ("body", "pipeline_id"),
        ("body", "execution_mode"),
        ("body", "queries", 0, "query"),
        ("body", "concurrency"),
    }
    assert by_loc["body", "name"]["type"] == "missing"
    assert by_loc["body", "concurrency"]["type"] == "less_than_equal"
    assert all(d["msg"] for d in details)


def test_deepset_workspace_must_be_a_uuid_and_body_json(ds: httpx.Client) -> None:
    response = ds.post("/api/v2/workspaces/prod/jobs", content=b"{not json")

    assert response.status_code == 422
    locs = [d["loc"] for d in response.json()["detail"]]
    assert ["path", "workspace_id"] in locs
    assert ["body", 0] in locs


def test_deepset_dry_run_validates_without_storing(ds: httpx.Client) -> None:
    response = ds.post(DEEPSET_JOBS, params={"dry_run": "true"}, json=deepset_body())

    assert response.status_code == 201
    job_id = response.json()["job_id"]
    assert ds.get(f"{DEEPSET_JOBS}/{job_id}").status_code == 404
    assert ds.get(DEEPSET_JOBS).json()["total"] == 0


def test_deepset_refuses_missing_or_wrong_key_with_401(ds: httpx.Client) -> None:
    missing = httpx.post(f"{ds.base_url}{DEEPSET_JOBS}", json=deepset_body())
    wrong = ds.post(DEEPSET_JOBS, json=deepset_body(), headers={"Authorization": "Bearer nope"})

    assert missing.status_code == wrong.status_code == 401
    assert isinstance(missing.json()["detail"], str)
    assert isinstance(wrong.json()["detail"], str)


def test_deepset_query_set_jobs_and_paginated_list(
    ds: httpx.Client, deepset: DeepsetEmulator
) -> None:
    # Given a pipeline whose query sets hold 7 queries
    deepset.configure_target(PIPELINE, query_set_size=7)
    query_set = "3e1d2c4b-5a6f-4e7d-8c9b-0a1b2c3d4e5f"

    # When three jobs run on a query set
    ids = []
    for _ in range(3):
        job = ds.post(DEEPSET_JOBS, json=deepset_body(queries=None, query_set_id=query_set))
        ids.append(job.json()["job_id"])
    first_page = ds.get(DEEPSET_JOBS, params={"limit": 2, "page_number": 1}).json()
    second_page = ds.get(DEEPSET_JOBS, params={"limit": 2, "page_number": 2}).json()

    # Then each counts the query set's size and the list pages newest first
    assert first_page["total"] == 3
    assert first_page["has_more"] is True
    assert second_page["has_more"] is False
    listed = [j["job_id"] for j in first_page["data"] + second_page["data"]]
    assert listed == ids[::-1]
    assert {j["total_requests"] for j in first_page["data"]} == {7}
    assert first_page["data"][0]["query_set_id"] == query_set


# -- Pixxel -------------------------------------------------------------------------------------


def pixxel_jobs(workflow: str = "wf-ndvi") -> str:
    return f"/v0/workflows/{workflow}/jobs"


def test_pixxel_job_runs_its_task_dag_to_completed(px: httpx.Client) -> None:
    # When a job is created from a workflow
    response = px.post(pixxel_jobs(), params={"project_id": "proj-1"})

    # Then it answers 200 with the job, which runs to completed through its tasks
    assert response.status_code == 200
    job = response.json()
    assert job["status"] == "running"
    assert job["val_errors"] == []
    assert job["progress"].endswith("%")
    assert isinstance(job["cost"], int)
    assert isinstance(job["estimated_duration"], int)
    assert [t["name"] for t in job["tasks"]] == ["read-input", "process", "write-output"]
    first, second, third = job["tasks"]
    assert second["depends_on"] == [first["id"]]
    assert third["depends_on"] == [second["id"]]
    assert set(first["block_info"]) == {"id", "name", "version"}
    url = f"{pixxel_jobs()}/{job['id']}"
    seen = wait_until(lambda: px.get(url).json(), lambda j: j["status"] in TERMINAL_PIXXEL)
    final = seen[-1]
    assert final["status"] == "completed"
    assert final["progress"] == "100%"
    assert final["finished_at"] is not None
    assert final["time_taken"].endswith("s")
    assert {t["status"] for t in final["tasks"]} == {"completed"}
    assert all(t["progress"] == 100 for t in final["tasks"])


def test_pixxel_failed_job_names_the_failing_task(px: httpx.Client, pixxel: PixxelEmulator) -> None:
    pixxel.configure_target("wf-ndvi", outcome="failure")

    job = px.post(pixxel_jobs(), params={"project_id": "proj-1"}).json()
    url = f"{pixxel_jobs()}/{job['id']}"
    final = wait_until(lambda: px.get(url).json(), lambda j: j["status"] in TERMINAL_PIXXEL)[-1]

    assert final["status"] == "failed"
    failed = [t for t in final["tasks"] if t["status"] == "failed"]
    assert len(failed) == 1
    assert failed[0]["err_msg"]
    assert failed[0]["failure_type"]
    assert final["tasks"][-1]["status"] != "completed"


def test_pixxel_invalid_workflow_answers_val_errors(
    px: httpx.Client, pixxel: PixxelEmulator
) -> None:
    pixxel.configure_target("wf-broken", invalid=True)

    response = px.post(pixxel_jobs("wf-broken"), params={"project_id": "proj-1"})

    assert response.status_code == 200
    job = response.json()
    assert job["status"] == "failed"
    assert job["val_errors"]
    assert set(job["val_errors"][0]) == {"from", "to", "err", "reason", "component_name"}


def test_pixxel_errors_use_its_error_shape(px: httpx.Client, pixxel: PixxelEmulator) -> None:
    # Given a workflow that does not exist and one bound to another project
    pixxel.configure_target("wf-gone", exists=False)
    pixxel.configure_target("wf-private", project_id="proj-other")

    missing_project = px.post(pixxel_jobs())
    unknown = px.post(pixxel_jobs("wf-gone"), params={"project_id": "proj-1"})
    not_allowed = px.post(pixxel_jobs("wf-private"), params={"project_id": "proj-1"})
    bad_key = px.post(
        pixxel_jobs(), params={"project_id": "proj-1"}, headers={"Authorization": "wrong"}
    )

    assert missing_project.status_code == 400
    assert unknown.status_code == 404
    assert not_allowed.status_code == 403
    assert bad_key.status_code == 403
    for response in (missing_project, unknown, not_allowed, bad_key):
        error = response.json()["error"]
        assert set(error) == {"code", "message", "details"}
        assert error["message"]
    assert pixxel.jobs() == []


def test_pixxel_accepts_bearer_key_and_lists_with_filters(px: httpx.Client) -> None:
    headers = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
    first = px.post(pixxel_jobs(), params={"project_id": "p"}, headers=headers).json()
    second = px.post(pixxel_jobs(), params={"project_id": "p"}).json()
    px.post(pixxel_jobs("wf-other"), params={"project_id": "p"})

    listed = px.get(pixxel_jobs()).json()["jobs"]
    by_id = px.get(pixxel_jobs(), params={"id": first["id"]}).json()["jobs"]
    today = first["created_at"][:10]
    by_day = px.get(pixxel_jobs(), params={"created_on": today, "status": "running"}).json()

    assert [j["id"] for j in listed] == [second["id"], first["id"]]
    assert [j["id"] for j in by_id] == [first["id"]]
    assert len(by_day["jobs"]) == 2
    assert px.get(f"{pixxel_jobs('wf-other')}/{first['id']}").status_code == 404


# -- Matatika -----------------------------------------------------------------------------------


def matatika_create(mt: httpx.Client, pipeline: str = PIPELINE) -> httpx.Response:
    return mt.post(f"/api/pipelines/{pipeline}/jobs")


def test_matatika_job_completes_and_its_logs_grow(
    mt: httpx.Client, matatika: MatatikaEmulator
) -> None:
    # Given a pipeline whose runs last long enough to read logs midway
    matatika.configure_target(PIPELINE, duration=0.6)

    # When a job is created from it
    response = matatika_create(mt)

    # Then it is a HAL job, queued, that runs to COMPLETE with exit code 0
    assert response.status_code == 201
    job = response.json()
    assert job["status"] == "QUEUED"
    assert job["type"] == "PIPELINE_RUN"
    assert job["_links"]["self"]["href"].endswith(f"/api/jobs/{job['id']}")
    url = f"/api/jobs/{job['id']}"
    wait_until(lambda: mt.get(url).json(), lambda j: j["status"] == "RUNNING")
    early = mt.get(f"{url}/logs").text.splitlines()
    final = wait_until(lambda: mt.get(url).json(), lambda j: j["status"] in TERMINAL_MATATIKA)[-1]
    assert final["status"] == "COMPLETE"
    assert final["exitCode"] == 0
    assert final["startTime"]
    assert final["endTime"]

    # And its logs grew while it ran, as text or NDJSON, with 204 past the end
    lines = mt.get(f"{url}/logs").text.splitlines()
    assert 0 < len(early) < len(lines)
    ndjson = mt.get(f"{url}/logs", headers={"Accept": "application/x-ndjson"})
    records = [json.loads(line) for line in ndjson.text.splitlines()]
    assert [r["sequence"] for r in records] == list(range(1, len(lines) + 1))
    tail = mt.get(f"{url}/logs", params={"sequence": len(lines) - 1}).text.splitlines()
    assert tail == lines[-1:]
    assert mt.get(f"{url}/logs", params={"sequence": len(lines)}).status_code == 204


def test_matatika_refuses_a_second_job_while_one_runs(
    mt: httpx.Client, matatika: MatatikaEmulator
) -> None:
    # Given a job in progress on the pipeline
    matatika.configure_target(PIPELINE, duration=0.8)
    first = matatika_create(mt).json()

    # When another is requested for the same pipeline
    busy = matatika_create(mt)

    # Then it is refused with 409 in Spring's shape, and other pipelines are not blocked
    assert busy.status_code == 409
    assert set(busy.json()) == {"timestamp", "status", "error", "message", "path", "errors"}
    assert busy.json()["path"] == f"/api/pipelines/{PIPELINE}/jobs"
    assert matatika_create(mt, OTHER_PIPELINE).status_code == 201
    url = f"/api/jobs/{first['id']}"
    wait_until(lambda: mt.get(url).json(), lambda j: j["status"] in TERMINAL_MATATIKA)
    assert matatika_create(mt).status_code == 201


def test_matatika_concurrent_creates_start_exactly_one_job(
    mt: httpx.Client, matatika: MatatikaEmulator
) -> None:
    # When eight creates for one pipeline race each other
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(lambda _: matatika_create(mt).status_code, range(8)))

    # Then exactly one job starts and the others are told the pipeline is busy
    assert sorted(codes) == [201] + [409] * 7
    assert len(matatika.jobs()) == 1


def test_matatika_stop_only_while_running(mt: httpx.Client, matatika: MatatikaEmulator) -> None:
    matatika.configure_target(PIPELINE, duration=5.0, queued=0.3)
    job = matatika_create(mt).json()
    url = f"/api/jobs/{job['id']}"

    too_early = mt.put(f"{url}/stopped")
    wait_until(lambda: mt.get(url).json(), lambda j: j["status"] == "RUNNING")
    stopped = mt.put(f"{url}/stopped")
    again = mt.put(f"{url}/stopped")

    assert too_early.status_code == 409
    assert stopped.status_code == 202
    assert mt.get(url).json()["status"] == "STOPPED"
    assert again.status_code == 409
    assert again.json()["status"] == 409
    assert matatika_create(mt).status_code == 201


def test_matatika_delete_stops_and_removes_the_job(
    mt: httpx.Client, matatika: MatatikaEmulator
) -> None:
    matatika.configure_target(PIPELINE, duration=5.0)
    job = matatika_create(mt).json()
    url = f"/api/jobs/{job['id']}"

    deleted = mt.delete(url)

    assert deleted.status_code == 204
    assert mt.get(url).status_code == 404
    assert mt.delete(url).status_code == 404
    assert matatika_create(mt).status_code == 201
    assert [j["phase"] for j in matatika.jobs() if j["id"] == job["id"]] == ["stopped"]


def test_matatika_error_details_need_the_task_details_header(
    mt: httpx.Client, matatika: MatatikaEmulator
) -> None:
    matatika.configure_target(PIPELINE, outcome="failure")
    job = matatika_create(mt).json()
    url = f"/api/jobs/{job['id']}"

    plain = wait_until(lambda: mt.get(url).json(), lambda j: j["status"] in TERMINAL_MATATIKA)[-1]
    detailed = mt.get(url, headers={"enable-task-details": "true"}).json()

    assert plain["status"] == "ERROR"
    assert plain["exitCode"] == 1
    assert plain["errorMessage"] is None
    assert detailed["errorMessage"]
    assert detailed["exitMessage"]
    assert "ERROR" in mt.get(f"{url}/logs").text


def test_matatika_refuses_missing_token_and_unknown_pipeline(
    mt: httpx.Client, matatika: MatatikaEmulator
) -> None:
    matatika.set_strict_targets(True)
    matatika.configure_target(PIPELINE)

    unauthenticated = httpx.post(f"{mt.base_url}/api/pipelines/{PIPELINE}/jobs")
    unknown = matatika_create(mt, OTHER_PIPELINE)
    no_job = mt.get("/api/jobs/3b0c4f58-0000-4000-8000-000000000000")

    assert unauthenticated.status_code == 401
    assert unknown.status_code == 404
    assert no_job.status_code == 404
    for response in (unauthenticated, unknown, no_job):
        assert set(response.json()) == {"timestamp", "status", "error", "message", "path", "errors"}
    assert matatika_create(mt).status_code == 201


def test_matatika_lists_pages_newest_first(mt: httpx.Client, matatika: MatatikaEmulator) -> None:
    # Given jobs on two pipelines, one of them in another workspace
    matatika.configure(duration=0.0, queued=0.0)
    matatika.configure_target(OTHER_PIPELINE, workspace_id="ws-elsewhere")
    ids = [matatika_create(mt).json()["id"] for _ in range(3)]
    matatika_create(mt, OTHER_PIPELINE)

    first = mt.get(f"/api/pipelines/{PIPELINE}/jobs", params={"size": 2}).json()
    last = mt.get(f"/api/pipelines/{PIPELINE}/jobs", params={"size": 2, "page": 1}).json()
    workspace = mt.get(f"/api/workspaces/{DEFAULT_WORKSPACE_ID}/jobs").json()
    empty = mt.get("/api/workspaces/ws-empty/jobs").json()

    listed = [j["id"] for j in first["_embedded"]["jobs"] + last["_embedded"]["jobs"]]
    assert listed == ids[::-1]
    assert first["page"] == {"size": 2, "totalElements": 3, "totalPages": 2, "number": 0}
    assert [j["id"] for j in workspace["_embedded"]["jobs"]] == ids[::-1]
    # Spring HATEOAS drops `_embedded` from an empty page.
    assert "_embedded" not in empty
    assert empty["page"]["totalElements"] == 0


def test_matatika_exchanges_client_credentials_for_a_token(mt: httpx.Client) -> None:
    form = {"grant_type": "client_credentials", "client_id": "local-client"}

    granted = httpx.post(
        f"{mt.base_url}/oauth/token", data={**form, "client_secret": "local-secret"}
    )
    denied = httpx.post(f"{mt.base_url}/oauth/token", data={**form, "client_secret": "x"})

    assert granted.status_code == 200
    token = granted.json()["access_token"]
    assert granted.json()["expires_in"] > 0
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.post(f"{mt.base_url}/api/pipelines/{PIPELINE}/jobs", headers=headers).is_success
    assert denied.status_code == 401


# -- faults -------------------------------------------------------------------------------------


def test_status_fault_sequence_with_retry_after_then_normal(
    ds: httpx.Client, deepset: DeepsetEmulator
) -> None:
    deepset.add_fault(method="POST", path=r"/jobs$", status=[503, 429], retry_after=2)

    answers = [ds.post(DEEPSET_JOBS, json=deepset_body()) for _ in range(3)]

    assert [a.status_code for a in answers] == [503, 429, 201]
    assert answers[0].headers["Retry-After"] == "2"
    assert "detail" in answers[0].json()
    assert len(deepset.jobs()) == 1
    assert deepset.creates_received(PIPELINE) == 3


def test_delay_fault_makes_the_client_time_out_once(
    px: httpx.Client, pixxel: PixxelEmulator
) -> None:
    job = px.post(pixxel_jobs(), params={"project_id": "p"}).json()
    url = f"{pixxel_jobs()}/{job['id']}"
    pixxel.add_fault(Fault(action="delay", method="GET", path=job["id"], delay=0.5))

    with pytest.raises(httpx.ReadTimeout):
        px.get(url, timeout=0.1)
    assert px.get(url).status_code == 200


def test_latency_applies_to_every_answer_of_a_target(
    px: httpx.Client, pixxel: PixxelEmulator
) -> None:
    pixxel.configure_target("wf-slow", latency=0.5)

    with pytest.raises(httpx.ReadTimeout):
        px.post(pixxel_jobs("wf-slow"), params={"project_id": "p"}, timeout=0.1)
    assert px.post(pixxel_jobs(), params={"project_id": "p"}).status_code == 200


def test_dropped_connection_raises_and_creates_nothing(
    mt: httpx.Client, matatika: MatatikaEmulator
) -> None:
    matatika.add_fault(action="drop", method="POST", path=r"/api/pipelines/.+/jobs")

    with pytest.raises(httpx.RemoteProtocolError):
        matatika_create(mt)

    assert matatika.jobs() == []
    assert matatika.requests()[-1]["status"] is None
    assert matatika_create(mt).status_code == 201


def test_reset_mid_response_raises(ds: httpx.Client, deepset: DeepsetEmulator) -> None:
    deepset.add_fault(action="reset", method="GET", path=r"/jobs$")

    with pytest.raises(httpx.RemoteProtocolError):
        ds.get(DEEPSET_JOBS)
    assert ds.get(DEEPSET_JOBS).status_code == 200


def test_malformed_and_empty_bodies(px: httpx.Client, pixxel: PixxelEmulator) -> None:
    job = px.post(pixxel_jobs(), params={"project_id": "p"}).json()
    url = f"{pixxel_jobs()}/{job['id']}"
    pixxel.add_fault(action="malformed", method="GET", path=job["id"])
    pixxel.add_fault(action="empty", method="GET", path=job["id"], skip=1)

    malformed = px.get(url)
    empty = px.get(url)

    assert malformed.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        malformed.json()
    assert empty.status_code == 200
    assert empty.content == b""
    assert px.get(url).json()["id"] == job["id"]


def test_after_handler_fault_creates_the_job_but_answers_502(
    px: httpx.Client, pixxel: PixxelEmulator
) -> None:
    # Given the gateway fails after the provider has created the job
    pixxel.add_fault(action="status", method="POST", path="/jobs$", status=[502], after=True)

    # When a job is created
    response = px.post(pixxel_jobs(), params={"project_id": "p"})

    # Then the caller sees a 502, yet the job exists and can be found by listing
    assert response.status_code == 502
    assert "error" in response.json()
    listed = px.get(pixxel_jobs()).json()["jobs"]
    assert len(listed) == 1
    assert pixxel.creates_received("wf-ndvi") == 1


def test_after_handler_drop_creates_the_job_without_an_answer(
    ds: httpx.Client, deepset: DeepsetEmulator
) -> None:
    deepset.add_fault(action="drop", method="POST", path="/jobs$", after=True)

    with pytest.raises(httpx.RemoteProtocolError):
        ds.post(DEEPSET_JOBS, json=deepset_body())

    assert ds.get(DEEPSET_JOBS).json()["total"] == 1


def test_stuck_job_never_finishes_and_keeps_the_pipeline_busy(
    mt: httpx.Client, matatika: MatatikaEmulator
) -> None:
    matatika.configure(duration=0.1, queued=0.0)
    matatika.script_next_job(PIPELINE, stuck=True)
    job = matatika_create(mt).json()

    time.sleep(0.3)

    assert mt.get(f"/api/jobs/{job['id']}").json()["status"] == "RUNNING"
    assert matatika_create(mt).status_code == 409


def test_unknown_status_value_is_reported_while_running(
    px: httpx.Client, pixxel: PixxelEmulator
) -> None:
    pixxel.script_next_job(raw_status="paused")

    scripted = px.post(pixxel_jobs(), params={"project_id": "p"}).json()
    normal = px.post(pixxel_jobs(), params={"project_id": "p"}).json()
    url = f"{pixxel_jobs()}/{scripted['id']}"

    assert scripted["status"] == "paused"
    assert normal["status"] == "running"
    final = wait_until(lambda: px.get(url).json(), lambda j: j["status"] in TERMINAL_PIXXEL)
    assert final[-1]["status"] == "completed"


# -- admin and entry points ---------------------------------------------------------------------


def test_admin_http_interface_scripts_and_reports(
    ds: httpx.Client, deepset: DeepsetEmulator
) -> None:
    admin = httpx.Client(base_url=f"{deepset.url}/_admin", timeout=5.0)
    with admin:
        # Given behaviour and a fault scripted through the admin API
        config = admin.put("/config", json={"defaults": {"duration": 0.1, "queued": 0.0}})
        target = admin.put(f"/targets/{PIPELINE}", json={"outcome": "failure"})
        fault = admin.post("/faults", json={"method": "GET", "path": "/jobs$", "status": [500]})
        scripted = admin.post("/next-jobs", json={"target": PIPELINE, "stuck": True})
        typo = admin.put("/config", json={"defaults": {"durration": 1}})
        assert [r.status_code for r in (config, target, fault, scripted)] == [200, 200, 201, 201]
        assert typo.status_code == 400
        assert admin.get("/faults").json()["faults"][0]["status"] == [500]

        # When requests arrive
        stuck = ds.post(DEEPSET_JOBS, json=deepset_body()).json()
        failing = ds.post(DEEPSET_JOBS, json=deepset_body()).json()
        assert ds.get(DEEPSET_JOBS).status_code == 500
        time.sleep(0.2)

        # Then the admin API reports jobs, creates received and requests without secrets
        jobs = admin.get("/jobs").json()
        phases = {job["id"]: job["phase"] for job in jobs["jobs"]}
        assert phases == {stuck["job_id"]: "running", failing["job_id"]: "failed"}
        assert jobs["creates_received"] == 2
        assert jobs["creates_by_target"] == {PIPELINE: 2}
        requests = admin.get("/requests")
        assert [r["status"] for r in requests.json()["requests"]] == [201, 201, 500]
        assert DEFAULT_API_KEY not in requests.text

        # And reset forgets everything
        assert admin.post("/reset").json() == {"reset": True}
        assert admin.get("/jobs").json()["jobs"] == []
        assert admin.get("/config").json()["defaults"]["duration"] == FAST.duration


def test_start_all_serves_three_providers() -> None:
    emulators = start_all({"pixxel": "pixxel-key"})
    try:
        assert set(emulators) == {"deepset", "pixxel", "matatika"}
        assert len({e.url for e in emulators.values()}) == 3
        pixxel_url = emulators["pixxel"].url
        accepted = httpx.post(
            f"{pixxel_url}/v0/workflows/wf/jobs?project_id=p",
            headers={"Authorization": "pixxel-key"},
        )
        assert accepted.status_code == 200
    finally:
        stop_all(emulators)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{pixxel_url}/_admin/health")


def test_module_entry_point_prints_urls() -> None:
    command = [sys.executable, "-m", "jobrelay_local.emulators", "--json", "--duration", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: S603
    try:
        assert process.stdout is not None
        urls = json.loads(process.stdout.readline())
        assert set(urls) == {"deepset", "pixxel", "matatika"}
        health = httpx.get(f"{urls['matatika']}/_admin/health").json()
        assert health["provider"] == "matatika"
    finally:
        process.terminate()
        process.wait(timeout=5)

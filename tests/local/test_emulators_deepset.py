"""The deepset Cloud emulator over loopback HTTP: job lifecycle, FastAPI-style 422s, auth, lists."""

from __future__ import annotations

import httpx
import pytest
from jobrelay_local.emulators.deepset import DeepsetEmulator

from tests.local.conftest import DEEPSET_JOBS, PIPELINE, TERMINAL_DEEPSET, deepset_body, wait_until

pytestmark = pytest.mark.integration


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

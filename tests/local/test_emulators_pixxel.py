"""The Pixxel emulator over loopback HTTP: the task DAG, validation errors, error shape, lists."""

from __future__ import annotations

import httpx
import pytest
from jobrelay_local.emulators import DEFAULT_API_KEY
from jobrelay_local.emulators.pixxel import PixxelEmulator

from tests.local.conftest import TERMINAL_PIXXEL, pixxel_jobs, wait_until

pytestmark = pytest.mark.integration


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

"""The Matatika emulator over loopback HTTP: HAL jobs one per pipeline at a time, stop, logs."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from jobrelay_local.emulators import DEFAULT_WORKSPACE_ID
from jobrelay_local.emulators.matatika import MatatikaEmulator

from tests.local.conftest import (
    OTHER_PIPELINE,
    PIPELINE,
    TERMINAL_MATATIKA,
    matatika_create,
    wait_until,
)

pytestmark = pytest.mark.integration


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
    # Given a pipeline whose job outlasts the race (the fast 0.35 s default could end before a
    # loaded machine has sent all eight, and the pipeline would rightly take a second job)
    matatika.configure_target(PIPELINE, duration=5.0)

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

"""What every emulator shares, over loopback HTTP: scripted faults, the admin API, entry points."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest
from jobrelay_local.emulators import DEFAULT_API_KEY, Fault, start_all, stop_all
from jobrelay_local.emulators.deepset import DeepsetEmulator
from jobrelay_local.emulators.matatika import MatatikaEmulator
from jobrelay_local.emulators.pixxel import PixxelEmulator

from tests.local.conftest import (
    DEEPSET_JOBS,
    FAST,
    PIPELINE,
    TERMINAL_PIXXEL,
    deepset_body,
    matatika_create,
    pixxel_jobs,
    wait_until,
)

pytestmark = pytest.mark.integration


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

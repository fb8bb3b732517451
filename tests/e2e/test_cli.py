"""The `jobrelay` CLI end to end: requests in, one outcome each out, as users run it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.formats.json import JSONFormat
from jobrelay_local.emulators import Fault

from tests.e2e.conftest import (
    jobrelay,
    jobrelay_up,
    json_lines,
    without_aws,
    write_requests,
)

pytestmark = pytest.mark.e2e

WS = "0b6e2c1e-5f1a-4c1e-9a47-1d2b3c4d5e6f"
PIPE = "7d7b2a3c-1e2f-4a5b-8c9d-0e1f2a3b4c5d"


def deepset(request_id: str) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "provider": "deepset",
        "params": {
            "workspace_id": WS,
            "name": "e2e",
            "pipeline_id": PIPE,
            "execution_mode": "PER_FILE",
            "queries": [{"query": "q"}],
        },
    }


def pixxel(request_id: str, workflow_id: str = "wf-e2e") -> dict[str, Any]:
    return {
        "request_id": request_id,
        "provider": "pixxel",
        "params": {"workflow_id": workflow_id, "project_id": "proj"},
    }


def matatika(request_id: str, pipeline_id: str = "pl-e2e", **tracking: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "request_id": request_id,
        "provider": "matatika",
        "params": {"pipeline_id": pipeline_id},
    }
    if tracking:
        body["tracking"] = tracking
    return body


def fast(emulators, **behaviour):
    for server in emulators.values():
        server.configure(queued=0.2, duration=1.0, **behaviour)


def by_request(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["data"]["request_id"]: e for e in events}


def test_run_takes_all_three_providers_to_success(emulators, cli_env, tmp_path):
    fast(emulators)
    file = write_requests(
        tmp_path / "r.json", deepset("e2e-ds"), pixxel("e2e-px"), matatika("e2e-mt")
    )
    result = jobrelay(["run", str(file), "--json", "--timeout", "90"], cli_env)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 3
    for line in lines:  # each line is the event exactly as published: valid CloudEvents JSON
        assert JSONFormat().read(None, line).get_type() == "jobrelay.job.succeeded"
    assert set(by_request(json_lines(result.stdout))) == {"e2e-ds", "e2e-px", "e2e-mt"}


def test_run_reports_a_failure_and_a_rejection(emulators, cli_env, tmp_path):
    fast(emulators)
    emulators["pixxel"].configure_target("wf-broken", outcome="failure")
    bad = {"request_id": "e2e-bad", "provider": "matatika", "params": {"pipeline_id": "../etc"}}
    file = write_requests(tmp_path / "r.json", pixxel("e2e-fails", "wf-broken"), bad)
    result = jobrelay(["run", str(file), "--json", "--timeout", "90"], cli_env)
    assert result.returncode == 0, result.stderr[-2000:]
    events = by_request(json_lines(result.stdout))
    assert events["e2e-fails"]["type"] == "jobrelay.job.failed"
    assert events["e2e-fails"]["data"]["details"]["failed_tasks"]
    assert events["e2e-bad"]["type"] == "jobrelay.job.rejected"
    assert events["e2e-bad"]["data"]["error"]["problems"][0]["field"] == "params.pipeline_id"
    assert emulators["matatika"].creates_received() == 0


def test_duplicate_delivery_creates_one_remote_job(emulators, cli_env, tmp_path):
    fast(emulators)
    file = write_requests(
        tmp_path / "r.json", matatika("e2e-dup"), matatika("e2e-dup"), matatika("e2e-dup")
    )
    result = jobrelay(["run", str(file), "--json", "--timeout", "90"], cli_env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(json_lines(result.stdout)) == 1
    assert emulators["matatika"].creates_received() == 1


def test_provider_outage_that_recovers_retries_the_request(emulators, cli_env, tmp_path):
    fast(emulators)
    emulators["pixxel"].add_fault(Fault(method="POST", path=r"/jobs$", status=[503, 503]))
    file = write_requests(tmp_path / "r.json", pixxel("e2e-outage"))
    result = jobrelay(["run", str(file), "--json", "--timeout", "90"], cli_env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json_lines(result.stdout)[0]["type"] == "jobrelay.job.succeeded"
    # two refused attempts, then the one that created the job
    assert emulators["pixxel"].creates_received() == 3
    assert len(emulators["pixxel"].jobs()) == 1


def test_deadline_stops_the_matatika_job(emulators, cli_env, tmp_path):
    emulators["matatika"].configure(queued=0.2, duration=600)
    file = write_requests(tmp_path / "r.json", matatika("e2e-late", deadline_seconds=5))
    result = jobrelay(["run", str(file), "--json", "--timeout", "90"], cli_env)
    assert result.returncode == 0, result.stderr[-2000:]
    event = json_lines(result.stdout)[0]
    assert event["type"] == "jobrelay.job.timed_out"
    assert event["data"]["details"]["cancelled_remotely"] is True
    assert emulators["matatika"].jobs()[0]["status"] == "STOPPED"


def test_run_timeout_exits_non_zero_naming_open_requests(emulators, cli_env, tmp_path):
    emulators["pixxel"].configure(queued=0.2, duration=600)
    file = write_requests(tmp_path / "r.json", pixxel("e2e-slow"))
    result = jobrelay(["run", str(file), "--timeout", "4"], cli_env)
    assert result.returncode == 1
    assert "e2e-slow" in result.stderr


def test_run_refuses_an_unreadable_file(cli_env, tmp_path):
    file = tmp_path / "broken.json"
    file.write_text("{nope", encoding="utf-8")
    result = jobrelay(["run", str(file)], cli_env)
    assert result.returncode == 2
    assert "not JSON" in result.stderr


def test_up_submit_and_events_against_a_running_stack(emulators, cli_env, tmp_path):
    # Given a machine with no AWS variables: the local stack brings its own region,
    # endpoint and credentials, and every command reaches it with them.
    cli_env = without_aws(cli_env)
    cli_env["HOME"] = str(tmp_path)  # and no ~/.aws either
    fast(emulators)
    state = Path(cli_env["JOBRELAY_STATE_DIR"]) / "stack.json"
    with jobrelay_up(cli_env) as port:
        assert json.loads(state.read_text())["endpoint_url"] == f"http://127.0.0.1:{port}"
        file = write_requests(tmp_path / "r.json", pixxel("e2e-up"))
        submitted = jobrelay(["submit", str(file), "--wait", "--json", "--timeout", "60"], cli_env)
        assert submitted.returncode == 0, submitted.stderr[-2000:]
        assert json_lines(submitted.stdout)[0]["type"] == "jobrelay.job.succeeded"
        listed = jobrelay(["events", "--json"], cli_env)
        assert listed.returncode == 0
        assert [e["data"]["request_id"] for e in json_lines(listed.stdout)] == ["e2e-up"]
        # A schedule fired twice for the same time: one job, one outcome
        fire = ["schedule", "fire", "nightly-matatika-sync", "--at", "2026-11-24T01:00:00Z"]
        first, second = jobrelay(fire, cli_env), jobrelay(fire, cli_env)
        assert first.returncode == 0, first.stderr[-2000:]
        request_id = "nightly-matatika-sync@2026-11-24T01:00:00Z"
        assert first.stdout.strip() == second.stdout.strip() == request_id
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            events = json_lines(jobrelay(["events", "--json"], cli_env).stdout)
            if any(e["data"]["request_id"] == request_id for e in events):
                break
            time.sleep(1)
        time.sleep(3)  # room for a second outcome, which must not come
        events = json_lines(jobrelay(["events", "--json"], cli_env).stdout)
        assert [e["data"]["request_id"] for e in events].count(request_id) == 1
        assert emulators["matatika"].creates_received("pl-hubspot-to-warehouse") == 1
        # A rejected request is listed in the DLQ with its reason
        bad = write_requests(tmp_path / "bad.json", {"request_id": "e2e-dead", "provider": "x"})
        assert jobrelay(["submit", str(bad), "--wait", "--timeout", "60"], cli_env).returncode == 0
        dead = json_lines(jobrelay(["dlq", "list", "--json"], cli_env).stdout)
        assert [(d["request_id"], d["code"], d["redrivable"]) for d in dead] == [
            ("e2e-dead", "REQUEST_INVALID", False)
        ]


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["dlq", "list"], 2, "no local stack is running: start `jobrelay up`"),
        (["schedule", "fire", "nightly-matatika-sync"], 2, "no local stack is running"),
        (["dlq", "redrive", "--stack", "prod"], 2, "no AWS region for stack 'prod'"),
        (["dlq", "list", "--stack", "prod", "--region", "eu-west-1"], 1, "no AWS credentials"),
    ],
)
def test_a_command_without_a_stack_to_reach_says_what_to_do_in_one_line(tmp_path, args, code, says):
    env = without_aws(dict(os.environ))
    env.update({"HOME": str(tmp_path), "JOBRELAY_STATE_DIR": str(tmp_path / "state")})
    events = write_requests(tmp_path / "r.json", pixxel("e2e-nowhere"))
    for command in (args, ["submit", str(events)]):
        result = jobrelay(command, env, timeout=60)
        assert result.returncode == (code if command is args else 2), result.stderr
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: ")
    assert says in jobrelay(args, env, timeout=60).stderr


def test_debug_shows_the_traceback_of_a_failed_command(tmp_path):
    env = without_aws(dict(os.environ))
    env.update({"HOME": str(tmp_path), "JOBRELAY_STATE_DIR": str(tmp_path / "state")})
    result = jobrelay(["--debug", "dlq", "list"], env, timeout=60)
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "CommandError" in result.stderr


def test_demo_ends_every_sample_request_as_expected(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT", "JOBRELAY_"))}
    env["JOBRELAY_STATE_DIR"] = str(tmp_path / "state")
    result = jobrelay(["demo"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "demo passed: 6 outcomes as expected" in result.stderr
    logs = (tmp_path / "state" / "logs.jsonl").read_text().splitlines()
    assert logs, "the functions' logs go to the state directory, not the terminal"
    # moto's and the emulators' own lines go to their files, not the terminal
    terminal = (result.stdout + result.stderr).lower()
    assert "moto" not in terminal
    assert "warning" not in terminal
    assert "listening on" not in terminal
    moto_log = (tmp_path / "state" / "moto.log").read_text()
    assert "No Moto CloudFormation support for AWS::CloudWatch::Alarm" in moto_log
    assert "listening on" in (tmp_path / "state" / "emulators.log").read_text()

"""Connections and limits through the CLI, on a machine with no AWS configuration: requests
over two connections of one provider with different keys and over its default connection,
each call carrying its connection's key (the emulator's tenants say whose), a cap of one job
at a time held at the provider, a connection added while `jobrelay up` runs (a Matatika
OAuth client), and a bad connections file refused in one line."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from jobrelay_local.emulators import DEFAULT_TENANT, EmulatorServer, key_fingerprint

from tests.e2e.conftest import jobrelay, jobrelay_up, json_lines, without_aws, write_requests
from tests.e2e.test_cli import matatika, pixxel

pytestmark = pytest.mark.e2e

KEY_A = "e2e-geo-a-key"
KEY_B = "e2e-geo-b-key"


@pytest.fixture
def env(cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The CLI's environment with no AWS variable and no ~/.aws."""
    bare = without_aws(cli_env)
    bare["HOME"] = str(tmp_path)
    return bare


def write_connections(path: Path, connections: Mapping[str, Any]) -> Path:
    """A connections file, JSON or YAML as its name says."""
    document = {"connections": connections}
    dump = json.dumps if path.suffix == ".json" else yaml.safe_dump
    path.write_text(dump(document), encoding="utf-8")
    return path


def over(connection: str | None, request: dict[str, Any]) -> dict[str, Any]:
    return request if connection is None else {**request, "connection": connection}


def job_tenants(emulator: EmulatorServer) -> dict[str, str | None]:
    return {job["id"]: job["tenant"] for job in emulator.jobs()}


def calls_by_job(emulator: EmulatorServer, job_ids: set[str]) -> dict[str, set[str | None]]:
    """For each job, the tenants of the calls that named it (create excluded)."""
    seen: dict[str, set[str | None]] = {}
    for call in emulator.requests():
        for job_id in job_ids & set(re.split(r"[/?]", call["path"])):
            seen.setdefault(job_id, set()).add(call["tenant"])
    return seen


def test_run_drives_two_connections_of_one_provider_and_its_default(
    emulators: dict[str, EmulatorServer], env: dict[str, str], tmp_path: Path
) -> None:
    # Given a Pixxel account with two more keys besides the default one
    pixxel_api = emulators["pixxel"]
    pixxel_api.configure(queued=0.2, duration=1.0)
    tenant_a, tenant_b = pixxel_api.add_tenant(KEY_A), pixxel_api.add_tenant(KEY_B)
    connections = write_connections(
        tmp_path / "connections.yaml",
        {
            "geo-a": {
                "provider": "pixxel",
                "base_url": "https://api.pixxel.space",
                "api_key": KEY_A,
            },
            "geo-b": {"provider": "pixxel", "api_key": KEY_B, "max_in_flight": 2},
        },
    )
    wanted = {
        "e2e-cn-a1": "geo-a",
        "e2e-cn-a2": "geo-a",
        "e2e-cn-b1": "geo-b",
        "e2e-cn-b2": "geo-b",
        "e2e-cn-d1": None,
        "e2e-cn-d2": None,
    }
    requests = write_requests(
        tmp_path / "r.json", *(over(c, pixxel(rid)) for rid, c in wanted.items())
    )

    # When they run through an ephemeral stack
    result = jobrelay(
        ["run", str(requests), "--connections", str(connections), "--json", "--timeout", "50"],
        env,
        timeout=90,
    )

    # Then one outcome and one job per request, each over its connection
    assert result.returncode == 0, result.stderr[-2000:]
    events = {e["data"]["request_id"]: e for e in json_lines(result.stdout)}
    assert set(events) == set(wanted)
    for request_id, connection in wanted.items():
        assert events[request_id]["type"] == "jobrelay.job.succeeded"
        assert events[request_id]["data"]["connection"] == (connection or "pixxel")
    jobs = job_tenants(pixxel_api)
    assert len(jobs) == len(wanted)
    tenant_of = {"geo-a": tenant_a, "geo-b": tenant_b, None: DEFAULT_TENANT}
    for request_id, connection in wanted.items():
        assert jobs[events[request_id]["data"]["remote_job_id"]] == tenant_of[connection]
    # each call about a job carried the key that created it; no call was refused
    for job_id, tenants in calls_by_job(pixxel_api, set(jobs)).items():
        assert tenants == {jobs[job_id]}
    stats = pixxel_api.tenants()
    assert tenant_a == key_fingerprint(KEY_A)
    assert stats[tenant_a]["created"] == stats[tenant_b]["created"] == 2
    assert stats[DEFAULT_TENANT]["created"] == 2
    assert pixxel_api.unauthorized_calls() == 0
    # the public base URL was pointed at the emulator, and said so; no key was printed
    assert f"'geo-a' (pixxel): base_url api.pixxel.space -> {pixxel_api.url}" in result.stderr
    assert KEY_A not in result.stderr + result.stdout


def test_a_cap_of_one_keeps_one_job_at_a_time_at_the_provider(
    emulators: dict[str, EmulatorServer], env: dict[str, str], tmp_path: Path
) -> None:
    # Given a connection that may have one job unfinished at a time
    pixxel_api = emulators["pixxel"]
    pixxel_api.configure(queued=0.2, duration=1.0)
    pixxel_api.add_tenant("e2e-solo-key", label="solo")
    connections = write_connections(
        tmp_path / "connections.json",
        {"solo": {"provider": "pixxel", "api_key": "e2e-solo-key", "max_in_flight": 1}},
    )
    ids = [f"e2e-cap-{n}" for n in range(4)]
    requests = write_requests(tmp_path / "r.json", *(over("solo", pixxel(i)) for i in ids))

    # When four requests over it run
    result = jobrelay(
        ["run", str(requests), "--connections", str(connections), "--json", "--timeout", "50"],
        env,
        timeout=90,
    )

    # Then all four succeed, one after the other at the provider
    assert result.returncode == 0, result.stderr[-2000:]
    events = {e["data"]["request_id"]: e for e in json_lines(result.stdout)}
    assert {i: e["type"] for i, e in events.items()} == dict.fromkeys(ids, "jobrelay.job.succeeded")
    solo = pixxel_api.tenants()["solo"]
    assert solo["created"] == 4
    assert solo["max_running"] == 1
    assert len(pixxel_api.jobs()) == 4


def test_a_connection_added_while_up_runs_is_used_with_its_oauth_client(
    emulators: dict[str, EmulatorServer], env: dict[str, str], tmp_path: Path
) -> None:
    # Given a running local stack, and a Matatika OAuth client the stack has never seen
    matatika_api = emulators["matatika"]
    matatika_api.configure(queued=0.2, duration=1.0)
    tenant = matatika_api.add_client("e2e-client", "e2e-client-secret", label="mt-oauth")
    connections = write_connections(
        tmp_path / "later.yaml",
        {
            "mt-oauth": {
                "provider": "matatika",
                "client_id": "e2e-client",
                "client_secret": "e2e-client-secret",
            }
        },
    )
    requests = write_requests(tmp_path / "r.json", over("mt-oauth", matatika("e2e-late", "pl-l")))
    with jobrelay_up(env):
        # When the connection is added along with a request that names it
        result = jobrelay(
            ["submit", str(requests), "--connections", str(connections), "--wait", "--json"],
            env,
            timeout=90,
        )

    # Then the request succeeds over it, its job created with the client's own token
    assert result.returncode == 0, result.stderr[-2000:]
    (event,) = json_lines(result.stdout)
    assert event["type"] == "jobrelay.job.succeeded"
    assert event["data"]["connection"] == "mt-oauth"
    assert set(job_tenants(matatika_api).values()) == {tenant}
    assert "added connection 'mt-oauth' (matatika)" in result.stderr
    assert "e2e-client-secret" not in result.stderr + result.stdout


def test_a_bad_connections_file_is_refused_in_one_line_before_anything_starts(
    env: dict[str, str], tmp_path: Path
) -> None:
    connections = write_connections(
        tmp_path / "bad.yaml",
        {"geo": {"provider": "pixxel", "api_key": "e2e-do-not-print", "max_in_flight": 0}},
    )
    requests = write_requests(tmp_path / "r.json", pixxel("e2e-never"))

    result = jobrelay(["run", str(requests), "--connections", str(connections)], env, timeout=60)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: bad.yaml: connection 'geo': max_in_flight:")
    assert "e2e-do-not-print" not in result.stderr

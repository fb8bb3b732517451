"""The local stack with connections: stored where the deployed stack reads them, pointed at
its emulators, each credential a tenant of its emulator, a connection added while it runs
used within seconds; the local deployment's parameters and environment for them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from jobrelay_local.connections_file import parse_connections
from jobrelay_local.runtime import LocalStack

from tests.integration.conftest import pixxel_request

# The module shares one local stack: under pytest-xdist its tests stay on one worker.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("local_connections")]

CONNECTIONS = {
    "connections": {
        "geo-team": {
            "provider": "pixxel",
            "base_url": "https://api.pixxel.space",
            "api_key": "geo-team-key",
            "max_in_flight": 2,
        },
        "eval-oauth": {
            "provider": "matatika",
            "client_id": "eval-client",
            "client_secret": "eval-secret",
        },
    }
}


@pytest.fixture(scope="module")
def local() -> Iterator[LocalStack]:
    previous = os.environ.get("SECRET_MAX_AGE_SECONDS")
    stack = LocalStack(
        environ={},
        visibility_timeout=2,
        parameters={"PollIntervalSeconds": "1", "FirstPollSeconds": "0", "MinPollSeconds": "1"},
        connections=parse_connections(CONNECTIONS),
    )
    with stack:
        for emulator in stack.emulators.values():
            emulator.configure(queued=0.1, duration=0.3)
        yield stack
    assert os.environ.get("SECRET_MAX_AGE_SECONDS") == previous


def outcome(local: LocalStack, request: dict[str, Any]) -> dict[str, Any]:
    local.submit(request)
    outcomes, still_open = local.wait_for_outcomes([request["request_id"]], timeout=60)
    assert not still_open, f"no outcome for {request['request_id']}"
    return outcomes[request["request_id"]]


def test_connections_are_secrets_under_the_functions_prefix(local: LocalStack) -> None:
    prefix = local.require_stack().function("CreateJobFunction").environment["CONNECTIONS_PREFIX"]
    secrets = boto3.client("secretsmanager")

    stored = json.loads(secrets.get_secret_value(SecretId=f"{prefix}geo-team")["SecretString"])

    assert prefix == local.connections_prefix == "jobrelay/connections/"
    assert stored == {
        "provider": "pixxel",
        "base_url": local.emulators["pixxel"].url,
        "api_key": "geo-team-key",
        "max_in_flight": 2,
    }
    assert any(
        "'geo-team'" in note and "api.pixxel.space" in note for note in local.connection_notes
    )


def test_the_local_deployment_allows_loopback_hosts_and_reads_secrets_often(
    local: LocalStack,
) -> None:
    stack = local.require_stack()

    for provider in ("Deepset", "Pixxel", "Matatika"):
        assert stack.parameters[f"{provider}AllowedHosts"] == "127.0.0.1,localhost"
    assert stack.function("CreateJobFunction").environment["PIXXEL_ALLOWED_HOSTS"] == (
        "127.0.0.1,localhost"
    )
    assert os.environ["SECRET_MAX_AGE_SECONDS"] == "2"
    assert local.source is not None
    trigger = stack.function("CreateJobFunction").sqs_trigger
    assert trigger is not None
    assert local.source.maximum_concurrency <= (trigger.maximum_concurrency or 0)


def test_a_request_over_a_connection_uses_its_key(local: LocalStack) -> None:
    request = {**pixxel_request("lc-geo-1"), "connection": "geo-team"}

    event = outcome(local, request)

    assert event["type"] == "jobrelay.job.succeeded"
    assert event["data"]["connection"] == "geo-team"
    jobs = {job["id"]: job["tenant"] for job in local.emulators["pixxel"].jobs()}
    assert jobs[event["data"]["remote_job_id"]] == "geo-team"


def test_a_matatika_oauth_connection_gets_a_token_of_its_own_tenant(local: LocalStack) -> None:
    request = {
        "request_id": "lc-mt-1",
        "provider": "matatika",
        "params": {"pipeline_id": "pl-lc-1"},
        "connection": "eval-oauth",
    }

    event = outcome(local, request)

    assert event["type"] == "jobrelay.job.succeeded"
    tenants = local.emulators["matatika"].tenants()
    assert tenants["eval-oauth"]["created"] == 1
    assert tenants["default"]["created"] == 0


def test_a_connection_added_while_the_stack_runs_is_used(local: LocalStack) -> None:
    late = parse_connections(
        {"connections": {"late-team": {"provider": "pixxel", "api_key": "late-key"}}}
    )
    local.add_connections(late)

    event = outcome(local, {**pixxel_request("lc-late-1"), "connection": "late-team"})

    assert event["type"] == "jobrelay.job.succeeded"
    assert event["data"]["connection"] == "late-team"
    assert local.emulators["pixxel"].tenants()["late-team"]["created"] == 1

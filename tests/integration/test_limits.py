"""Connections and their limits on the deployed template in moto, with the real handlers, the
real definition and the emulators on loopback: requests over several connections, a cap of 1
and of 3 held at the provider, waiting requests created in arrival order as slots free, a
waiting request cancelled or reaching its deadline, a create that fails while holding a slot,
and a connection added while the stack runs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import boto3
import pytest
from jobrelay_local.runtime import LocalStack

from tests.integration.conftest import pixxel_request

pytestmark = pytest.mark.integration

WORKFLOW = "wf-1"
BOUND = 90.0  # generous: how soon is measured in bench/, not asserted here


class Stack:
    """The running stack with the helpers these tests share."""

    def __init__(self, local: LocalStack) -> None:
        self.local = local
        self.stack = local.require_stack()
        self.pixxel = local.emulators["pixxel"]
        env = self.stack.functions["CreateJobFunction"].environment
        self.prefix = env["CONNECTIONS_PREFIX"]
        self.limits_table = env["LIMITS_TABLE"]
        self.secrets = boto3.client("secretsmanager")
        self.sqs = boto3.client("sqs")

    def key(self) -> str:
        """A key the Pixxel emulator accepts."""
        return self.pixxel.api_key or "local-pixxel-key"

    def add_connection(self, name: str, **document: Any) -> None:
        value = {"provider": "pixxel", "base_url": self.pixxel.url, "api_key": self.key()}
        value.update(document)
        self.secrets.create_secret(Name=self.prefix + name, SecretString=json.dumps(value))

    def send(self, *requests: dict[str, Any]) -> None:
        for request in requests:
            self.local.submit(request)

    def outcomes(self, request_ids: list[str], timeout: float = BOUND) -> dict[str, Any]:
        outcomes, still_open = self.local.wait_for_outcomes(request_ids, timeout=timeout)
        assert not still_open, f"no outcome within {timeout}s for {sorted(still_open)}"
        return outcomes

    def events_of(self, request_id: str) -> list[dict[str, Any]]:
        return [e for e in self.local.events() if e["data"]["request_id"] == request_id]

    def jobs(self) -> list[dict[str, Any]]:
        return self.pixxel.jobs()

    def dead_letters(self) -> list[dict[str, Any]]:
        return self.local.dead_letters()


@pytest.fixture
def stack() -> Iterator[Stack]:
    local = LocalStack(
        visibility_timeout=2,
        environ={},
        parameters={
            "PollIntervalSeconds": "1",
            "FirstPollSeconds": "0",
            "MinPollSeconds": "1",
            "PixxelAllowedHosts": "127.0.0.1",
        },
    )
    with local:
        yield Stack(local)


def request(request_id: str, connection: str | None = None, **extra: Any) -> dict[str, Any]:
    body = pixxel_request(request_id, WORKFLOW)
    if connection is not None:
        body["connection"] = connection
    body.update(extra)
    return body


def peak_running(jobs: list[dict[str, Any]]) -> int:
    """The most jobs that existed unfinished at the provider at once, from the emulator's
    records: each job runs from its creation for `queued + duration` seconds."""
    edges: list[tuple[float, int]] = []
    for job in jobs:
        created = _epoch(job["created_at"])
        behaviour = job["behaviour"]
        edges.append((created, 1))
        edges.append((created + behaviour["queued"] + behaviour["duration"], -1))
    running = peak = 0
    for _, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        running += step
        peak = max(peak, running)
    return peak


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def wait_for(condition: Callable[[], Any], *, within: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + within
    while True:
        seen = condition()
        if seen:
            return seen
        assert time.monotonic() < deadline, f"not within {within}s: {what}"
        time.sleep(0.1)


# ------------------------------------------------------------------ connections
def test_requests_over_named_and_default_connections_each_end_once(stack):
    stack.add_connection("geo-team")
    stack.add_connection("geo-lab", description="a second account")
    stack.pixxel.configure_target(WORKFLOW, queued=0.0, duration=0.5)
    ids = {"r-geo": "geo-team", "r-lab": "geo-lab", "r-default": None}
    stack.send(*(request(rid, connection) for rid, connection in ids.items()))
    outcomes = stack.outcomes(list(ids))
    for rid, connection in ids.items():
        event = outcomes[rid]
        assert event["type"] == "jobrelay.job.succeeded", event
        assert event["data"]["connection"] == (connection or "pixxel")
        assert len(stack.events_of(rid)) == 1
    assert len(stack.jobs()) == 3
    assert stack.dead_letters() == []


@pytest.mark.parametrize(
    ("connection", "problem"),
    [("no-such-team", "no connection named"), ("deepset-eval", "is a deepset connection")],
)
def test_an_unknown_or_another_providers_connection_is_rejected_naming_it(
    stack, connection, problem
):
    stack.secrets.create_secret(
        Name=stack.prefix + "deepset-eval",
        SecretString=json.dumps(
            {
                "provider": "deepset",
                "base_url": stack.local.emulators["deepset"].url,
                "api_key": "k",
            }
        ),
    )
    stack.send(request("r-bad", connection))
    event = stack.outcomes(["r-bad"])["r-bad"]
    assert event["type"] == "jobrelay.job.rejected"
    problems = event["data"]["error"]["problems"]
    assert [p["field"] for p in problems] == ["connection"]
    assert problem in problems[0]["message"]
    assert stack.jobs() == []
    (dead,) = stack.dead_letters()
    assert problem in dead["MessageAttributes"]["jobrelay_reason"]["StringValue"]


def test_a_malformed_connection_is_retried_not_rejected_and_its_fix_is_picked_up(stack):
    stack.secrets.create_secret(
        Name=stack.prefix + "broken",
        SecretString=json.dumps({"provider": "pixxel", "base_url": stack.pixxel.url}),
    )
    stack.pixxel.configure_target(WORKFLOW, queued=0.0, duration=0.3)
    stack.send(request("r-broken", "broken"))
    # Retried (a configuration error), never rejected: no event, nothing in the DLQ.
    time.sleep(4)
    assert stack.events_of("r-broken") == []
    assert stack.dead_letters() == []
    fixed = {"provider": "pixxel", "base_url": stack.pixxel.url, "api_key": stack.key()}
    stack.secrets.put_secret_value(SecretId=stack.prefix + "broken", SecretString=json.dumps(fixed))
    event = stack.outcomes(["r-broken"], timeout=BOUND)["r-broken"]
    assert event["type"] == "jobrelay.job.succeeded"
    assert event["data"]["connection"] == "broken"


def test_a_connection_host_the_stack_does_not_allow_is_never_called(stack):
    # The emulator answers on localhost too; only 127.0.0.1 is allowed in this test's stack.
    assert "127.0.0.1" in stack.pixxel.url
    stack.add_connection("elsewhere", base_url=stack.pixxel.url.replace("127.0.0.1", "localhost"))
    stack.send(request("r-elsewhere", "elsewhere"))
    time.sleep(3)
    assert stack.events_of("r-elsewhere") == []  # a configuration error: retried
    assert stack.jobs() == []
    assert stack.pixxel.requests() == []


# ------------------------------------------------------------------ limits
@pytest.mark.parametrize("cap", [1, 3])
def test_a_cap_is_held_at_the_provider_and_every_request_ends_once(stack, cap):
    stack.add_connection("capped", max_in_flight=cap)
    stack.pixxel.configure_target(WORKFLOW, queued=0.0, duration=1.0)
    ids = [f"r-{n:02d}" for n in range(3 * cap + 2)]
    stack.send(*(request(rid, "capped") for rid in ids))
    outcomes = stack.outcomes(ids, timeout=BOUND + 20 * cap)
    assert {e["type"] for e in outcomes.values()} == {"jobrelay.job.succeeded"}
    assert all(len(stack.events_of(rid)) == 1 for rid in ids)
    jobs = stack.jobs()
    assert len(jobs) == len(ids)
    assert peak_running(jobs) <= cap
    assert stack.dead_letters() == []


def test_waiting_requests_are_created_in_arrival_order(stack):
    stack.add_connection("one-at-a-time", max_in_flight=1)
    stack.pixxel.configure_target(WORKFLOW, queued=0.0, duration=0.5)
    ids = [f"r-order-{n}" for n in range(5)]
    for rid in ids:  # one by one: each has arrived before the next is sent
        stack.send(request(rid, "one-at-a-time"))
        wait_for(partial(_seen, stack, rid), what=f"{rid} taken by CreateJob")
    outcomes = stack.outcomes(ids)
    created = sorted(ids, key=lambda rid: outcomes[rid]["data"]["created_at"])
    assert created == ids


def _seen(stack: Stack, request_id: str) -> bool:
    entry = boto3.client("dynamodb").get_item(
        TableName=stack.stack.functions["CreateJobFunction"].environment["IDEMPOTENCY_TABLE"],
        Key={"id": {"S": f"ledger#{request_id}"}},
    )
    return "Item" in entry


def test_a_waiting_request_cancelled_ends_at_once_and_never_creates(stack):
    stack.add_connection("busy", max_in_flight=1)
    stack.pixxel.configure_target(WORKFLOW, queued=0.0, duration=600.0)
    stack.send(request("r-holder", "busy", tracking={"poll_interval_seconds": 600}))
    wait_for(lambda: len(stack.jobs()) == 1, what="the holder's job")
    stack.send(request("r-waiter", "busy"))
    wait_for(lambda: _seen(stack, "r-waiter"), what="the waiter queued")
    asked = time.monotonic()
    stack.send({"action": "cancel", "request_id": "r-waiter", "reason": "not needed"})
    event = stack.outcomes(["r-waiter"], timeout=30)["r-waiter"]
    assert time.monotonic() - asked < 30
    assert event["type"] == "jobrelay.job.cancelled"
    assert event["data"]["details"]["job_created"] is False
    assert len(stack.jobs()) == 1  # only the holder's
    assert len(stack.events_of("r-waiter")) == 1
    assert stack.dead_letters() == []


def test_a_request_still_waiting_at_its_deadline_times_out_with_nothing_created(stack):
    stack.add_connection("full", max_in_flight=1)
    stack.pixxel.configure_target(WORKFLOW, queued=0.0, duration=600.0)
    stack.send(request("r-long", "full", tracking={"poll_interval_seconds": 600}))
    wait_for(lambda: len(stack.jobs()) == 1, what="the first job")
    stack.send(request("r-late", "full", tracking={"deadline_seconds": 6}))
    event = stack.outcomes(["r-late"], timeout=40)["r-late"]
    assert event["type"] == "jobrelay.job.timed_out"
    assert event["data"]["details"] == {"job_created": False, "waited_for": "slot"}
    assert event["data"]["connection"] == "full"
    assert len(stack.jobs()) == 1
    assert stack.dead_letters() == []


def test_a_create_refused_while_holding_a_slot_frees_it_for_the_next(stack):
    stack.add_connection("strict", max_in_flight=1)
    stack.pixxel.configure_target("wf-missing", exists=False)
    stack.pixxel.configure_target(WORKFLOW, queued=0.0, duration=0.3)
    stack.send({**pixxel_request("r-refused", "wf-missing"), "connection": "strict"})
    stack.send(request("r-next", "strict"))
    outcomes = stack.outcomes(["r-refused", "r-next"])
    assert outcomes["r-refused"]["type"] == "jobrelay.job.rejected"
    assert outcomes["r-next"]["type"] == "jobrelay.job.succeeded"


def test_a_connection_added_while_the_stack_runs_is_used_by_the_next_request(stack):
    stack.pixxel.configure_target(WORKFLOW, queued=0.0, duration=0.3)
    stack.send(request("r-before", "newcomer"))
    assert stack.outcomes(["r-before"])["r-before"]["type"] == "jobrelay.job.rejected"
    stack.add_connection("newcomer")
    stack.send(request("r-after", "newcomer"))
    event = stack.outcomes(["r-after"])["r-after"]
    assert event["type"] == "jobrelay.job.succeeded"
    assert event["data"]["connection"] == "newcomer"


def test_an_operator_stop_of_a_slot_holder_frees_its_slot_for_the_next(stack):
    stack.add_connection("stoppable", max_in_flight=1)
    stack.pixxel.configure_target(WORKFLOW, queued=0.0, duration=600.0)
    stack.send(request("r-stopped", "stoppable", tracking={"poll_interval_seconds": 600}))
    wait_for(lambda: len(stack.jobs()) == 1, what="the holder's job")
    stack.send(request("r-queued", "stoppable"))
    wait_for(lambda: _seen(stack, "r-queued"), what="the second request queued")
    stack.pixxel.configure_target(WORKFLOW, queued=0.0, duration=0.3)
    sfn = boto3.client("stepfunctions")
    (running,) = [
        e
        for e in sfn.list_executions(stateMachineArn=stack.stack.state_machine_arn)["executions"]
        if e["status"] == "RUNNING"
    ]
    sfn.stop_execution(executionArn=running["executionArn"], error="ops", cause="maintenance")
    outcomes = stack.outcomes(["r-stopped", "r-queued"])
    assert outcomes["r-stopped"]["type"] == "jobrelay.job.cancelled"  # TrackerEnded's
    assert outcomes["r-queued"]["type"] == "jobrelay.job.succeeded"
    assert len(stack.jobs()) == 2


def test_a_create_failing_transiently_keeps_its_slot_until_it_succeeds(stack):
    stack.add_connection("flaky", max_in_flight=1)
    stack.pixxel.configure_target(WORKFLOW, queued=0.0, duration=0.5)
    # The first create answers 503 through every HTTP attempt: the record is retried by SQS.
    stack.pixxel.add_fault(method="POST", path="/jobs", status=[503, 503, 503])
    stack.send(request("r-flaky", "flaky"))
    wait_for(lambda: _seen(stack, "r-flaky"), what="the first attempt")
    stack.send(request("r-after-flaky", "flaky"))
    outcomes = stack.outcomes(["r-flaky", "r-after-flaky"])
    assert {e["type"] for e in outcomes.values()} == {"jobrelay.job.succeeded"}
    created = sorted(outcomes.values(), key=lambda e: e["data"]["created_at"])
    assert [e["data"]["request_id"] for e in created] == ["r-flaky", "r-after-flaky"]
    assert peak_running(stack.jobs()) == 1
    assert stack.dead_letters() == []


def test_each_connection_calls_with_its_own_key_and_finds_only_its_own_jobs(stack):
    stack.pixxel.add_tenant("key-of-geo", label="geo")
    stack.pixxel.add_tenant("key-of-lab", label="lab")
    stack.add_connection("geo", api_key="key-of-geo", max_in_flight=1)
    stack.add_connection("lab", api_key="key-of-lab")
    stack.pixxel.configure_target(WORKFLOW, queued=0.0, duration=0.5)
    ids = {f"r-geo-{n}": "geo" for n in range(3)} | {f"r-lab-{n}": "lab" for n in range(2)}
    stack.send(*(request(rid, connection) for rid, connection in ids.items()))
    outcomes = stack.outcomes(list(ids))
    assert {e["type"] for e in outcomes.values()} == {"jobrelay.job.succeeded"}
    tenants = stack.pixxel.tenants()
    # Every create, poll and list went with the connection's key (another tenant's poll
    # of a job would have been a 404, and its request would have failed).
    assert (tenants["geo"]["created"], tenants["lab"]["created"]) == (3, 2)
    assert tenants["geo"]["max_running"] == 1  # its cap
    assert tenants["lab"]["max_running"] >= 1


def test_a_matatika_connection_with_oauth_client_credentials_gets_its_own_token(stack):
    matatika = stack.local.emulators["matatika"]
    matatika.add_client("team-client", "team-secret", label="team")
    matatika.configure_target("pipe-1", queued=0.0, duration=0.5)
    stack.secrets.create_secret(
        Name=stack.prefix + "elt-team",
        SecretString=json.dumps(
            {
                "provider": "matatika",
                "base_url": matatika.url,
                "client_id": "team-client",
                "client_secret": "team-secret",
                "token_url": f"{matatika.url}/oauth/token",
            }
        ),
    )
    stack.send(
        {
            "request_id": "r-elt",
            "provider": "matatika",
            "connection": "elt-team",
            "params": {"pipeline_id": "pipe-1"},
        }
    )
    event = stack.outcomes(["r-elt"])["r-elt"]
    assert event["type"] == "jobrelay.job.succeeded", event
    assert event["data"]["connection"] == "elt-team"
    assert matatika.tenants()["team"]["created"] == 1

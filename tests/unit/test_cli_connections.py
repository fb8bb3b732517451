"""Connections and waiting requests as the CLI shows them (`jobrelay jobs`, `status`,
`connections`), read from a stack in moto's in-process AWS (no socket) whose limits table,
job ledger and trackers were written by the layer's own code."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from jobrelay.admission import waiter_key
from jobrelay.aws import DynamoJobLedger, StepFunctionsTrackerStarter
from jobrelay.aws_limits import DynamoConnectionSlots
from jobrelay.models import JobRef, JobStatus, PollResult, TrackerState
from jobrelay.ports import Waiter
from jobrelay_cli import connection_commands, steer_commands
from jobrelay_cli.app import app
from jobrelay_cli.steer_commands import ordinal, waiting_for
from jobrelay_cli.target import Stack
from jobrelay_cli.tracking import Waiting, arrival_of
from jobrelay_cli.watch_view import span
from moto import mock_aws
from rich.console import Console
from typer.testing import CliRunner

from tests.tables import create_limits_table

REGION = "eu-west-1"
PREFIX = "jobrelay/connections/"
KEY = "pixxel-key-never-shown"
HOUR = timedelta(hours=1)
# A waiter's deadline after its arrival: half a minute over the hour, so the minutes shown
# stay the same while the test runs.
WAIT = HOUR + timedelta(seconds=30)


@dataclass
class MotoStack:
    """A jobrelay stack's tables, tracker machine and secrets in moto, with the layer's
    writers, and the CLI's view of it (`outputs`)."""

    session: boto3.Session
    outputs: dict[str, str]
    slots: DynamoConnectionSlots
    ledger: DynamoJobLedger
    starter: StepFunctionsTrackerStarter
    # The commands read the real clock: times here are set from the test's start.
    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def client(self, service: str) -> Any:
        return self.session.client(service)  # type: ignore[call-overload]

    def add_connection(self, name: str, value: dict[str, Any] | str) -> None:
        text = value if isinstance(value, str) else json.dumps(value)
        self.client("secretsmanager").create_secret(Name=PREFIX + name, SecretString=text)

    def hold(self, connection: str, request_id: str, *, cap: int, provider: str) -> None:
        """A request that took a slot and whose job is tracked."""
        assert self.slots.take(connection, request_id, cap=cap, deadline_at=self.now + HOUR)
        job = JobRef(
            request_id=request_id,
            provider=provider,
            connection=connection,
            holds_slot=True,
            remote_job_id=f"job-{request_id}",
            created_at=self.now - timedelta(minutes=5),
            deadline_at=self.now + HOUR,
            poll_interval_seconds=30,
        )
        self.starter.start(TrackerState(job=job, poll=PollResult(status=JobStatus.RUNNING)))

    def queue(
        self, connection: str, request_id: str, *, cap: int, arrived: datetime, provider: str
    ) -> None:
        """A request over its connection's cap, queued as CreateJob queues it."""
        at = self.ledger.note_waiting(
            request_id, connection=connection, waiting_for="slot", at=arrived
        )
        body = json.dumps({"request_id": request_id, "provider": provider, "params": {}})
        waiter = Waiter(connection, request_id, waiter_key(at, request_id), at + WAIT, body)
        self.slots.wait(waiter, cap=cap)


@pytest.fixture
def stack() -> Iterator[MotoStack]:
    with mock_aws():
        session = boto3.Session(
            aws_access_key_id="moto", aws_secret_access_key="moto", region_name=REGION
        )
        dynamodb = session.client("dynamodb")
        dynamodb.create_table(
            TableName="idempotency",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        create_limits_table(dynamodb)
        sfn = session.client("stepfunctions")
        machine = sfn.create_state_machine(
            name="JobTracker",
            definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
            roleArn="arn:aws:iam::123456789012:role/tracker",
        )["stateMachineArn"]
        outputs = {
            "IdempotencyTableName": "idempotency",
            "JobTrackerStateMachineArn": machine,
            "LimitsTableName": "limits",
            "ConnectionsSecretPrefix": PREFIX,
            "JobRequestsQueueUrl": "unused",
        }
        yield MotoStack(
            session,
            outputs,
            DynamoConnectionSlots("limits", client=dynamodb),
            DynamoJobLedger("idempotency", 3600, client=dynamodb),
            StepFunctionsTrackerStarter(machine, client=sfn),
        )


@pytest.fixture
def geo_team(stack: MotoStack) -> MotoStack:
    """geo-team (Pixxel, max_in_flight 2): two jobs in flight and three requests in line."""
    stack.add_connection(
        "geo-team",
        {
            "provider": "pixxel",
            "base_url": "https://api.pixxel.space",
            "api_key": KEY,
            "max_in_flight": 2,
            "description": "the geo team's project key",
        },
    )
    for request_id in ("r1", "r2"):
        stack.hold("geo-team", request_id, cap=2, provider="pixxel")
    for place, request_id in enumerate(("w1", "w2", "w3")):
        arrived = stack.now - timedelta(minutes=10 - place)
        stack.queue("geo-team", request_id, cap=2, arrived=arrived, provider="pixxel")
    return stack


class Cli:
    """Runs `jobrelay` commands against the moto stack, capturing what they print."""

    def __init__(self, stack: MotoStack, monkeypatch: pytest.MonkeyPatch) -> None:
        self.stack = stack
        self.outputs = dict(stack.outputs)
        self.printed = io.StringIO()
        console = Console(file=self.printed, width=240, soft_wrap=True)
        for module in (steer_commands, connection_commands):
            monkeypatch.setattr(module, "out", console)
            monkeypatch.setattr(module, "connect", self._connect)

    def _connect(self, *_: Any) -> Stack:
        return Stack("test", self.outputs, self.stack.session, None, local=True)

    def __call__(self, *args: str, exit_code: int = 0) -> str:
        self.printed.seek(0)
        self.printed.truncate()
        result = CliRunner().invoke(app, list(args))
        assert result.exit_code == exit_code, (result.output, result.exception)
        return self.printed.getvalue() + result.output

    def json_lines(self, *args: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self(*args, "--json").splitlines() if line]


def rows(printed: str, *, after: str) -> list[list[str]]:
    """The body rows of the table printed after the line containing `after`."""
    lines = printed[printed.index(after) :].splitlines()
    return [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in lines
        if line.startswith("│")
    ]


@pytest.fixture
def cli(stack: MotoStack, monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(stack, monkeypatch)


def test_jobs_lists_the_waiting_requests_apart_per_connection_in_line(geo_team, cli):
    # When jobs is asked for, as a table and as JSON
    table = cli("jobs")
    lines = cli.json_lines("jobs")
    # Then the running jobs come first, then geo-team's slots and its line, oldest first
    assert "2 request(s) in flight" in table
    assert [row[:2] for row in rows(table, after="in flight")[:2]] == [
        ["r1", "pixxel (geo-team)"],
        ["r2", "pixxel (geo-team)"],
    ]
    assert "3 request(s) waiting for a slot" in table
    assert rows(table, after="waiting for a slot") == [
        ["geo-team", "2 of 2", "1", "w1", "10m ago", "in 50m"],
        ["", "", "2", "w2", "9m ago", "in 51m"],
        ["", "", "3", "w3", "8m ago", "in 52m"],
    ]
    assert [(line["request_id"], line["status"]) for line in lines] == [
        ("r1", "RUNNING"),
        ("r2", "RUNNING"),
        ("w1", "WAITING"),
        ("w2", "WAITING"),
        ("w3", "WAITING"),
    ]
    assert {line["connection"] for line in lines} == {"geo-team"}
    second = lines[3]
    assert second["provider"] == "pixxel"
    assert second["waiting"]["position"] == 2
    assert (second["waiting"]["cap"], second["waiting"]["in_flight"]) == (2, 2)
    assert second["waiting"]["queued"] == 3
    assert second["waiting"]["since"] == (geo_team.now - timedelta(minutes=9)).isoformat()
    assert second["deadline_at"] == (geo_team.now - timedelta(minutes=9) + WAIT).isoformat()


def test_jobs_for_another_provider_shows_none_of_its_waiting_requests(geo_team, cli):
    assert cli.json_lines("jobs", "--provider", "deepset") == []
    assert "no requests in flight" in cli("jobs", "--provider", "deepset")
    assert [line["request_id"] for line in cli.json_lines("jobs", "--provider", "pixxel")] == [
        "r1",
        "r2",
        "w1",
        "w2",
        "w3",
    ]


def test_status_of_a_waiting_request_says_what_it_waits_for_and_its_place(geo_team, cli):
    # When the second in line is looked at
    shown = cli("status", "w2")
    record = cli.json_lines("status", "w2")[0]
    # Then it says which connection's slot it waits for, how full that is, and its place
    assert "connection geo-team" in shown
    assert "status     WAITING" in shown
    waiting_line = next(line for line in shown.splitlines() if line.startswith("waiting"))
    assert "for a slot of connection geo-team (2 of 2 in flight), 2nd in line of 3" in (
        waiting_line
    )
    assert (
        f"since {(geo_team.now - timedelta(minutes=9)).isoformat(timespec='seconds')}"
        in waiting_line
    )
    deadline = geo_team.now - timedelta(minutes=9) + WAIT
    assert f"deadline   {deadline.isoformat(timespec='seconds')}" in shown
    assert record["status"] == "WAITING"
    assert record["remote_job_id"] is None
    assert record["execution_arn"] is None
    assert record["waiting"]["waiting_for"] == "slot"
    assert record["waiting"]["position"] == 2


def test_status_of_a_running_request_shows_its_connection(geo_team, cli):
    shown = cli("status", "r1")
    assert "connection geo-team" in shown
    assert "waiting" not in shown
    assert cli.json_lines("status", "r1")[0]["connection"] == "geo-team"


def test_a_waiter_a_slot_came_to_says_its_job_is_being_created(geo_team, cli):
    # Given r1's outcome published: its slot freed and handed to the oldest waiter
    geo_team.slots.release("geo-team", "r1")
    admitted = geo_team.slots.admit("geo-team")
    assert [waiter.request_id for waiter in admitted] == ["w1"]
    # When w1 and w2 are looked at before w1's message is processed
    first, second = cli("status", "w1"), cli("status", "w2")
    # Then w1 holds its slot, and w2 moved up
    assert "for its job to be created: a slot of connection geo-team came to it" in first
    assert "(2 of 2 in flight)" in first
    assert cli.json_lines("status", "w1")[0]["waiting"]["holds_slot"] is True
    assert "1st in line of 2" in second


def test_a_request_waiting_for_the_creation_rate_says_so(stack, cli):
    stack.ledger.note_waiting("q1", connection="eval-us", waiting_for="rate", at=stack.now)
    shown = cli("status", "q1")
    assert "for the creation rate of connection eval-us, since" in shown
    assert cli.json_lines("status", "q1")[0]["waiting"]["waiting_for"] == "rate"


def test_a_request_that_waited_out_its_deadline_shows_its_outcome_not_a_wait(stack, cli):
    # Given a request that waited and ended timed_out with no job (still noted as waiting)
    stack.ledger.note_waiting(
        "late", connection="geo-team", waiting_for="slot", at=stack.now - HOUR
    )
    stack.ledger.record_outcome("late", event_type="jobrelay.job.timed_out", event_id="ev-late")
    record = cli.json_lines("status", "late")[0]
    assert record["status"] == "TIMED_OUT"
    assert record["waiting"] is None
    assert "waiting" not in cli("status", "late")


def test_a_long_line_shows_its_oldest_and_counts_the_rest(geo_team, cli, monkeypatch):
    monkeypatch.setattr("jobrelay_cli.tracking.WAITERS_SHOWN", 2)
    table = cli("jobs")
    assert "w1" in table
    assert "w2" in table
    assert "w3" not in table
    assert "… and 1 more" in table


def test_a_stack_deployed_before_limits_still_shows_jobs_and_status(geo_team, cli):
    # Given a stack with no limits table and no connections output
    del cli.outputs["LimitsTableName"]
    del cli.outputs["ConnectionsSecretPrefix"]
    # Then jobs lists its running requests and nothing about waiting
    table = cli("jobs")
    assert "2 request(s) in flight" in table
    assert "waiting" not in table
    assert [line["request_id"] for line in cli.json_lines("jobs")] == ["r1", "r2"]
    assert "connection geo-team" in cli("status", "r1")
    # and connections says in one line why it has none
    refused = cli("connections", "list", exit_code=1)
    assert "keeps no connections" in refused
    assert len(refused.strip().splitlines()) == 1


def test_connections_lists_each_connection_without_its_credential(geo_team, cli):
    # Given a deepset connection with OAuth-less key, a malformed one and an unusable name
    geo_team.add_connection(
        "eval-us",
        {"provider": "deepset", "base_url": "https://api.us.deepset.ai", "api_key": KEY},
    )
    geo_team.add_connection("broken", {"provider": "pixxel", "api_key": KEY, "extra": 1})
    geo_team.add_connection("bad.name", {"provider": "pixxel"})
    # When they are listed
    table = cli("connections", "list")
    lines = {line["name"]: line for line in cli.json_lines("connections", "list")}
    # Then each shows its provider, host, credential form and limits, never the key
    assert KEY not in table
    assert KEY not in json.dumps(lines)
    assert lines["geo-team"]["provider"] == "pixxel"
    assert lines["geo-team"]["base_url"] == "https://api.pixxel.space/"
    assert lines["geo-team"]["credential"] == "api_key"
    assert lines["geo-team"]["max_in_flight"] == 2
    assert (lines["geo-team"]["in_flight"], lines["geo-team"]["waiting"]) == (2, 3)
    assert lines["eval-us"]["provider"] == "deepset"
    assert "in_flight" not in lines["eval-us"]
    assert "base_url" in lines["broken"]["problem"]
    assert "extra" in lines["broken"]["problem"]
    assert "no request can name it" in lines["bad.name"]["problem"]
    # and the providers no connection overrides use the stack's configuration
    assert {name for name, line in lines.items() if line.get("default")} == {
        "deepset",
        "pixxel",
        "matatika",
    }
    assert "api.us.deepset.ai" in table
    by_name = {row[0]: row for row in rows(table, after="connection(s)")}
    assert by_name["geo-team"] == [
        "geo-team",
        "pixxel",
        "api.pixxel.space",
        "api_key",
        "2 in flight",
        "2 held, 3 waiting",
        "the geo team's project key",
    ]
    assert by_name["pixxel"] == ["pixxel", "pixxel", "", "", "none", "", "default"]
    assert "PixxelBaseUrl/PixxelApiKeySecretArn" in table


def test_connections_add_reads_its_file_before_anything_else(tmp_path):
    # Given no connections file where one is named
    missing = tmp_path / "missing.yaml"
    # When it is added
    result = CliRunner().invoke(app, ["connections", "add", str(missing)])
    # Then the command fails in one line naming the file, as one of how it was called
    assert result.exit_code == 2
    assert "missing.yaml" in result.output


def test_a_connection_named_after_its_provider_replaces_the_default_in_the_list(stack, cli):
    stack.add_connection(
        "pixxel", {"provider": "pixxel", "base_url": "https://api.pixxel.space", "api_key": KEY}
    )
    lines = cli.json_lines("connections", "list")
    assert [(line["name"], bool(line.get("default"))) for line in lines] == [
        ("pixxel", False),
        ("deepset", True),
        ("matatika", True),
    ]


@pytest.mark.parametrize(
    ("waiting", "told"),
    [
        (
            Waiting("geo", "slot", position=5, cap=2, in_flight=2, queued=5),
            "for a slot of connection geo (2 of 2 in flight), 5th in line",
        ),
        (
            Waiting("geo", "slot", position=1, cap=2, in_flight=2, queued=3),
            "for a slot of connection geo (2 of 2 in flight), 1st in line of 3",
        ),
        (
            Waiting("geo", "slot", cap=2, in_flight=1, queued=0),
            "for a slot of connection geo (1 of 2 in flight), joining or leaving its line",
        ),
        (Waiting("geo", "slot"), "for a slot of connection geo"),
        (
            Waiting("geo", "slot", cap=3, in_flight=3, holds_slot=True),
            "for its job to be created: a slot of connection geo came to it (3 of 3 in flight)",
        ),
        (Waiting("geo", "rate"), "for the creation rate of connection geo"),
        (
            Waiting("geo", "rate", holds_slot=True),
            "for the creation rate of connection geo, holding one of its slots",
        ),
    ],
)
def test_what_a_waiting_request_waits_for_reads_as_one_sentence(waiting, told):
    assert waiting_for(waiting, lambda _: "-") == told


def test_ordinals_and_spans_read_as_an_operator_writes_them():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
        "101st",
        "111th",
    ]
    assert [span(s) for s in (0, 45, 119.4, 120, 3599, 7200, 7500, 172_800, 200_000)] == [
        "0s",
        "45s",
        "119s",
        "2m",
        "59m",
        "2h00m",
        "2h05m",
        "2d00h",
        "2d07h",
    ]


def test_a_waiters_arrival_is_read_back_from_its_key():
    arrived = datetime(2026, 12, 1, 9, 0, 3, 250_000, tzinfo=UTC)
    assert arrival_of(waiter_key(arrived, "r#1")) == arrived
    assert arrival_of("w#not-a-time#r1") is None

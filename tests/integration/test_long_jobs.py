"""Long jobs: the real JobTracker definition continues as a new execution of the same request
after its share of rounds, and the chain still polls each round once and publishes once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from jobrelay import settings
from jobrelay.models import execution_name

from tests.integration.conftest import Harness, matatika_request

pytestmark = pytest.mark.integration


@pytest.fixture
def short_executions(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Trackers continue as new after 3 rounds (PollJobStatus reads it on first use)."""
    monkeypatch.setenv("ROUNDS_PER_EXECUTION", "3")
    settings.forget_settings()
    yield
    settings.forget_settings()


def chain(harness: Harness, request_id: str) -> list[dict[str, Any]]:
    """The request's executions, generation by generation, each with its history."""
    sfn = boto3.client("stepfunctions")
    by_name = {e["name"]: e for e in harness.executions()}
    found = []
    generation = 0
    while (name := execution_name(request_id, generation)) in by_name:
        arn = by_name[name]["executionArn"]
        events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        entered = [
            e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e
        ]
        found.append(
            {"status": sfn.describe_execution(executionArn=arn)["status"], "states": entered}
        )
        generation += 1
    return found


def status_gets(harness: Harness, provider: str) -> int:
    return sum(
        1
        for r in harness.emulators[provider].requests()
        if r["method"] == "GET" and "/jobs/" in r["path"]
    )


def test_long_job_continues_as_new_and_publishes_one_outcome(harness: Harness, short_executions):
    # Given a job that runs for many more rounds than one execution may
    harness.emulators["matatika"].configure_target("pipe-long", queued=0.0, duration=8)
    harness.send(matatika_request("long-1", pipeline_id="pipe-long"))
    harness.deliver()
    # When it is followed to its end
    event = harness.wait_outcome("long-1", timeout=120)
    # Then it ends in one succeeded event
    assert event["type"] == "jobrelay.job.succeeded"
    assert len(harness.events_for("long-1")) == 1
    # And it took a chain of executions: every one but the last ended by starting the next
    executions = chain(harness, "long-1")
    assert len(executions) >= 3
    for earlier in executions[:-1]:
        assert earlier["status"] == "SUCCEEDED"
        assert earlier["states"][-2:] == ["ContinueAsNew", "ContinuedAsNew"]
        assert "PublishOutcome" not in earlier["states"]
        assert earlier["states"].count("PollJobStatus") == 3
    assert executions[-1]["states"][-1] == "PublishOutcome"
    # And no round polled twice: the provider saw exactly the polls the event counts
    assert status_gets(harness, "matatika") == event["data"]["details"]["polls"]
    rounds = sum(e["states"].count("PollJobStatus") for e in executions)
    assert rounds == event["data"]["details"]["polls"]


def test_deadline_holds_across_generations(harness: Harness, short_executions):
    # Given a job that outlives its deadline by far and a tracker that continues every 3 rounds
    harness.emulators["matatika"].configure_target("pipe-endless", queued=0.0, duration=300)
    harness.send(matatika_request("late-long-1", pipeline_id="pipe-endless", deadline_seconds=8))
    harness.deliver()
    # When the deadline passes in a later generation
    event = harness.wait_outcome("late-long-1", timeout=120)
    # Then the job is stopped and timed out, once
    assert event["type"] == "jobrelay.job.timed_out"
    assert event["data"]["details"]["cancelled_remotely"] is True
    assert len(harness.events_for("late-long-1")) == 1
    executions = chain(harness, "late-long-1")
    assert len(executions) >= 2
    assert executions[-1]["states"][-2:] == ["CancelJob", "PublishOutcome"]

"""The sample events in `events/` stay valid against the contracts they illustrate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jobrelay.creation import parse_request
from jobrelay.errors import RequestInvalid
from jobrelay.models import OutcomeTask, TrackerState

EVENTS = Path(__file__).resolve().parents[2] / "events"


@pytest.mark.parametrize("name", ["deepset", "pixxel", "matatika"])
def test_sqs_sample_events_carry_valid_requests(name):
    event = json.loads((EVENTS / f"sqs-{name}.json").read_text())
    request = parse_request(event["Records"][0]["body"])
    assert request.provider == name


def test_tracker_task_samples_are_what_the_tasks_receive():
    TrackerState.model_validate(json.loads((EVENTS / "poll-job-status.json").read_text()))
    task = OutcomeTask.model_validate(json.loads((EVENTS / "publish-outcome.json").read_text()))
    assert task.state().execution_arn == task.execution_arn


def test_demo_requests_are_valid_except_the_one_meant_to_be_rejected():
    for path in sorted((EVENTS / "requests").glob("*.json")):
        body = path.read_text()
        expect = json.loads(body)["metadata"]["demo_expect"]
        if expect == "rejected":
            with pytest.raises(RequestInvalid):
                parse_request(body)
        else:
            parse_request(body)

"""The demo's live view follows a long job across the tracker executions it continues as."""

from __future__ import annotations

import json
from typing import Any

from jobrelay.models import execution_name
from jobrelay_cli.live_view import tracker_view

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:jobrelay-JobTracker"
EXECUTIONS = "arn:aws:states:us-east-1:123456789012:execution:jobrelay-JobTracker:"


class FakeStepFunctions:
    def __init__(self, outputs: dict[str, dict[str, Any]]) -> None:
        self.outputs = outputs

    def get_execution_history(self, *, executionArn: str, **_: Any) -> dict[str, Any]:
        name = executionArn.removeprefix(EXECUTIONS)
        if name not in self.outputs:
            raise LookupError(name)
        output = json.dumps(self.outputs[name])
        return {"events": [{"stateExitedEventDetails": {"output": output}}]}


def test_view_shows_the_latest_generation_of_a_long_job() -> None:
    first, second = execution_name("long-1"), execution_name("long-1", 1)
    sfn = FakeStepFunctions(
        {
            first: {"poll": {"status": "RUNNING", "progress": 0.2, "continue_as": second}},
            second: {"poll": {"status": "RUNNING", "progress": 0.65}},
        }
    )
    assert tracker_view(sfn, MACHINE, "long-1") == ("RUNNING", "65%")


def test_view_keeps_the_last_status_while_the_next_generation_starts() -> None:
    first = execution_name("long-2")
    sfn = FakeStepFunctions(
        {first: {"poll": {"status": "RUNNING", "continue_as": execution_name("long-2", 1)}}}
    )
    assert tracker_view(sfn, MACHINE, "long-2") == ("RUNNING", "")


def test_view_of_a_request_without_a_tracker_yet() -> None:
    assert tracker_view(FakeStepFunctions({}), MACHINE, "new-1") == ("waiting", "")

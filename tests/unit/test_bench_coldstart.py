"""The cold-start bench's design floor: the module it writes and the reads it makes, and the
report's figures beside the target."""

from __future__ import annotations

import ast
from types import SimpleNamespace
from typing import Any

import pytest

from bench.coldstart import POWERTOOLS_UTILITIES, design_floor_call, design_floor_handler
from bench.report import targets


def _imports(source: str) -> list[str]:
    names = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(str(node.module))
    return names


def test_the_design_floor_imports_the_functions_utilities_after_boto3_before_pydantic() -> None:
    source = design_floor_handler(
        ["aws_lambda_powertools.utilities.batch", "aws_lambda_powertools.metrics"]
    )
    assert _imports(source) == [
        "boto3",
        "aws_lambda_powertools.utilities.batch",
        "aws_lambda_powertools.metrics",
        "httpx",
        "aws_lambda_powertools.logging",
        "pydantic",
    ]


def test_the_design_floor_imports_only_what_the_design_fixes() -> None:
    source = design_floor_handler(["jobrelay.models", *POWERTOOLS_UTILITIES[:1]])
    assert "jobrelay" not in source
    assert _imports(source)[1] == POWERTOOLS_UTILITIES[0]


def _stack() -> Any:
    environment = {
        "IDEMPOTENCY_TABLE": "ledger",
        "DEEPSET_API_KEY_SECRET_ARN": "arn:secret",
        "JOBS_QUEUE_URL": "http://queue",
    }
    return SimpleNamespace(
        function=lambda name: SimpleNamespace(environment=environment),
        state_machine_arn="arn:sm",
        topic_arn="arn:topic",
    )


def test_each_service_gets_a_read_of_the_stacks_own_resources() -> None:
    stack = _stack()
    assert design_floor_call("secretsmanager", stack) == {
        "service": "secretsmanager",
        "operation": "get_secret_value",
        "params": {"SecretId": "arn:secret"},
    }
    assert design_floor_call("stepfunctions", stack)["params"] == {"stateMachineArn": "arn:sm"}
    assert design_floor_call("sns", stack)["params"] == {"TopicArn": "arn:topic"}
    assert design_floor_call("dynamodb", stack)["params"]["TableName"] == "ledger"


def test_a_service_without_a_read_is_an_error_not_a_skipped_call() -> None:
    with pytest.raises(RuntimeError, match="no read for lambda"):
        design_floor_call("lambda", _stack())


def _cold(to_floor: float, design: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "to_floor": to_floor,
        "to_baseline": 2.0,
        "to_floor_without_stand_in_extra": to_floor - 0.02,
        "floor": {},
    }
    if design:
        figures["to_design_floor"] = 1.104
        figures["design_floor"] = {"to_floor": 1.111}
    return figures


def test_the_design_floor_is_reported_beside_the_target_and_does_not_decide_it() -> None:
    results = {
        "coldstart": {
            "CreateJob": _cold(1.226, design=True),
            "PollJobStatus": _cold(1.097, design=True),
            "PublishOutcome": _cold(1.069, design=False),
        }
    }
    found = {t["name"].split(" ")[0]: t for t in targets(results)}
    create = found["CreateJob"]
    assert (create["ratio"], create["met"]) == (1.226, False)
    assert (create["to_design_floor"], create["design_floor_to_floor"]) == (1.104, 1.111)
    assert found["PollJobStatus"]["met"] is True
    assert "to_design_floor" not in found["PublishOutcome"]

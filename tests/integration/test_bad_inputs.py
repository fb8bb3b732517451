"""The bad-input corpus (`tests/bad_inputs/`) through CreateJob: each malformed or hostile body
is answered on its own (one rejected event naming the offending field, one DLQ copy with the
reason) without failing its batch, reaching a provider, or touching the good record beside it.

Every batch is one CreateJob invocation of ten records (the template's batch size): nine
corpus cases and one good request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Harness, pixxel_request

pytestmark = [pytest.mark.integration, pytest.mark.bad_inputs]

CORPUS = Path(__file__).resolve().parents[1] / "bad_inputs"
CASES: list[dict[str, Any]] = json.loads((CORPUS / "index.json").read_text(encoding="utf-8"))[
    "cases"
]
BATCH_SIZE = 10  # CreateJobBatchSize: one invocation per batch
BATCHES = [CASES[start : start + BATCH_SIZE - 1] for start in range(0, len(CASES), BATCH_SIZE - 1)]


def body_of(case: dict[str, Any]) -> str:
    # utf-8, not utf-8-sig: the byte-order-mark case must arrive with its BOM.
    return (CORPUS / case["file"]).read_text(encoding="utf-8")


def batch_id(batch: list[dict[str, Any]]) -> str:
    return f"{batch[0]['file'][:3]}-{batch[-1]['file'][:3]}"


def names_field(problems: list[dict[str, str]], field: str) -> bool:
    """A problem names `field` itself or a part of it (`metadata.team` for `metadata`)."""
    return any(p["field"] == field or p["field"].startswith(field + ".") for p in problems)


def rejection_problems(
    harness: Harness,
    case: dict[str, Any],
    message_id: str,
    dead_letters: list[dict[str, Any]],
) -> list[str]:
    """What is wrong with how one corpus case was answered (empty when it was answered right)."""
    problems: list[str] = []
    key = case["request_id"] if case["event_key"] == "request_id" else message_id
    events = harness.events_for(key)
    if [event["type"] for event in events] != ["jobrelay.job.rejected"]:
        problems.append(f"events under {key!r}: {[event['type'] for event in events]}")
    else:
        error = events[0]["data"]["error"]
        if error["code"] != "REQUEST_INVALID":
            problems.append(f"error code {error['code']}")
        if not names_field(error["problems"], case["field"]):
            named = [p["field"] for p in error["problems"]][:5]
            problems.append(f"no problem names {case['field']!r}: {named}")
    copies = [
        m
        for m in dead_letters
        if m["MessageAttributes"]["jobrelay_source_message_id"]["StringValue"] == message_id
    ]
    if len(copies) != 1:
        problems.append(f"{len(copies)} DLQ copies")
    else:
        attributes = copies[0]["MessageAttributes"]
        if attributes["jobrelay_error_code"]["StringValue"] != "REQUEST_INVALID":
            problems.append(f"DLQ code {attributes['jobrelay_error_code']['StringValue']}")
        if attributes["jobrelay_request_id"]["StringValue"] != key:
            problems.append(f"DLQ request id {attributes['jobrelay_request_id']['StringValue']}")
        if not attributes["jobrelay_reason"]["StringValue"]:
            problems.append("DLQ copy without a reason")
        if copies[0]["Body"] != body_of(case):
            problems.append("the DLQ copy is not the message as sent")
    return problems


def provider_calls_besides(harness: Harness, good_workflow: str) -> list[str]:
    """Every provider request that is not about the batch's good Pixxel job."""
    allowed = f"/v0/workflows/{good_workflow}/"
    return [
        f"{name} {entry['method']} {entry['path']}"
        for name, emulator in harness.emulators.items()
        for entry in emulator.requests()
        if not (name == "pixxel" and (entry["path"] + "/").startswith(allowed))
    ]


@pytest.mark.parametrize("batch", BATCHES, ids=batch_id)
def test_each_bad_input_is_rejected_alone_beside_a_good_request(
    harness: Harness, batch: list[dict[str, Any]]
):
    # Given nine corpus cases and one good request in one batch
    label = batch[0]["file"][:3]
    good_workflow = f"wf-good-{label}"
    good = pixxel_request(f"good-{label}", workflow_id=good_workflow)
    bodies = [body_of(case) for case in batch]
    middle = len(bodies) // 2
    sent = harness.send(*bodies[:middle], good, *bodies[middle:])
    good_message = sent.pop(middle)
    # When CreateJob handles them in one invocation
    delivery = harness.deliver()
    assert len(delivery["messages"]) == len(batch) + 1
    # Then no record is left for SQS to retry
    assert delivery["result"]["batchItemFailures"] == []
    # and each bad case has one rejected event naming its field and one DLQ copy
    dead_letters = harness.dead_letters()
    wrong = {
        case["file"]: problems
        for case, message_id in zip(batch, sent, strict=True)
        if (problems := rejection_problems(harness, case, message_id, dead_letters))
    }
    assert not wrong, json.dumps(wrong, indent=2)
    assert len(dead_letters) == len(batch)
    # and the good record beside them was created once and is being tracked
    assert harness.emulators["pixxel"].creates_received(good_workflow) == 1
    assert len(harness.executions()) == 1
    assert [e["type"] for e in harness.events_for(f"good-{label}")] in (
        [],
        ["jobrelay.job.succeeded"],
    )
    assert all(
        m["MessageAttributes"]["jobrelay_source_message_id"]["StringValue"] != good_message
        for m in dead_letters
    )
    # and no provider ever heard of a bad case
    assert provider_calls_besides(harness, good_workflow) == []

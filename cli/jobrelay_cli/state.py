"""Where a command finds its stack: the state a running `jobrelay up` leaves in the state
directory (`JOBRELAY_STATE_DIR`, default `.jobrelay/`), else CloudFormation's outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import boto3

STATE_DIR = Path(os.environ.get("JOBRELAY_STATE_DIR", ".jobrelay"))
STATE_FILE = STATE_DIR / "stack.json"
EVENTS_FILE = STATE_DIR / "events.jsonl"
LOGS_FILE = STATE_DIR / "logs.jsonl"
METRICS_FILE = STATE_DIR / "metrics.jsonl"


def running_state() -> dict[str, Any] | None:
    """What `jobrelay up` wrote about itself, if one is running."""
    if not STATE_FILE.exists():
        return None
    return dict(json.loads(STATE_FILE.read_text(encoding="utf-8")))


def stack_outputs(endpoint: str | None, stack_name: str) -> tuple[dict[str, str], str | None]:
    """The stack's outputs and endpoint: a running `jobrelay up`, else CloudFormation's."""
    state = running_state()
    if endpoint is None and state is not None:
        return dict(state["outputs"]), state["endpoint_url"]
    cfn = boto3.client("cloudformation", endpoint_url=endpoint)
    stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    return outputs, endpoint


def queue_url(endpoint: str | None, stack_name: str) -> tuple[str, str | None]:
    """The JobRequests queue's URL and the endpoint to reach it."""
    outputs, endpoint_url = stack_outputs(endpoint, stack_name)
    return outputs["JobRequestsQueueUrl"], endpoint_url


def read_events_file() -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The outcome events `jobrelay up` has recorded, and each one's JSON line by event id."""
    if not EVENTS_FILE.exists():
        return [], {}
    events, raw = [], {}
    for line in EVENTS_FILE.read_text(encoding="utf-8").splitlines():
        if line.strip():
            event = json.loads(line)
            events.append(event)
            raw[event["id"]] = line
    return events, raw

"""The demo's live table: each request's job as the tracker last saw it, then its outcome."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import boto3
from rich.table import Table

if TYPE_CHECKING:
    from jobrelay_local.runtime import LocalStack

# Tracker generations the demo view follows (a generation is 500 poll rounds).
MAX_GENERATIONS_SHOWN = 100


def outcomes_of(local: LocalStack, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The outcome events published so far for these request ids."""
    return {e["data"]["request_id"]: e for e in local.events() if e["data"]["request_id"] in ids}


def tracker_view(sfn: Any, state_machine_arn: str, request_id: str) -> tuple[str, str]:
    """What the tracker last saw of a job: (status, progress), following the execution a
    long job continued as (`poll.continue_as`) generation by generation."""
    from jobrelay.models import execution_name

    prefix, _, machine = state_machine_arn.partition(":stateMachine:")
    name = execution_name(request_id)
    seen = "QUEUED", ""
    for _ in range(MAX_GENERATIONS_SHOWN):
        arn = f"{prefix}:execution:{machine}:{name}"
        try:
            history = sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=30)
        except Exception:
            return seen if name != execution_name(request_id) else ("waiting", "")
        poll: dict[str, Any] | None = None
        for event in history["events"]:
            output = (event.get("stateExitedEventDetails") or {}).get("output")
            if output:
                poll = json.loads(output).get("poll") or {}
                break
        if poll is None:
            return seen
        progress = poll.get("progress")
        seen = str(poll.get("status", "…")), f"{progress:.0%}" if progress is not None else ""
        if not poll.get("continue_as"):
            return seen
        name = str(poll["continue_as"])
    return seen


def progress_table(local: LocalStack, ids: list[str], outcomes: dict[str, dict[str, Any]]) -> Table:
    """One row per request: its outcome if published, else what its tracker last saw."""
    sfn = boto3.client("stepfunctions")
    stack = local.require_stack()
    table = Table(title="jobrelay demo")
    for column in ("request", "provider", "status", "progress", "outcome"):
        table.add_column(column)
    for request_id in ids:
        event = outcomes.get(request_id)
        if event is not None:
            data = event["data"]
            progress = data.get("details", {}).get("progress")
            table.add_row(
                request_id,
                data["provider"],
                str(data["status"]),
                f"{progress:.0%}" if isinstance(progress, float) else "",
                event["type"].rsplit(".", 1)[-1],
            )
        else:
            status, progress = tracker_view(sfn, stack.state_machine_arn, request_id)
            table.add_row(request_id, "", status, progress, "…")
    return table

"""Where the CLI writes: progress and errors to stderr, outcomes to the real stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

console = Console(stderr=True, soft_wrap=True)
# Bound to the real stdout: the local stack sends what the functions print (EMF metrics) to
# a file while it runs.
out = Console(file=sys.__stdout__, soft_wrap=True)


def summary(event: dict[str, Any]) -> str:
    """One line for an outcome event: request, outcome, provider (and its connection when it
    is a named one), job and error."""
    data = event.get("data", {})
    provider, connection = data.get("provider"), data.get("connection")
    via = f" via {connection}" if connection and connection != provider else ""
    line = f"{data.get('request_id')}: {event.get('type')} ({provider}{via}"
    if data.get("remote_job_id"):
        line += f" job {data['remote_job_id']}"
    line += ")"
    error = data.get("error") or {}
    if error:
        line += f" - {error.get('code')}: {str(error.get('message'))[:160]}"
    return line


def print_outcomes(events: list[dict[str, Any]], raw: dict[str, str], as_json: bool) -> None:
    """Each event as its summary line, or (`as_json`) as published, one JSON per line."""
    for event in events:
        if as_json:
            out.print(
                raw.get(event["id"], json.dumps(event)),
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        else:
            out.print(summary(event), markup=False, highlight=False, soft_wrap=True)

"""Where a command finds its stack: the state a running `jobrelay up` leaves in the state
directory (`JOBRELAY_STATE_DIR`, default `.jobrelay/`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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

"""JSON Schemas of the two public contracts, generated from the models.

`python -m jobrelay.schemas DIR` writes them; a test fails when the committed copies are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from jobrelay.models import OutcomeEvent
from jobrelay.registry import QUEUE_MESSAGE_ADAPTER


def schemas() -> dict[str, dict[str, Any]]:
    request = QUEUE_MESSAGE_ADAPTER.json_schema()
    request.update(
        {
            "title": "JobRequest",
            "description": "A message on the JobRequests queue: a create (one of the "
            "providers' requests, `action` absent or `create`) or a cancel (`action: cancel`).",
            "$schema": "https://json-schema.org/draft/2020-12/schema",
        }
    )
    event = OutcomeEvent.model_json_schema()
    event.update(
        {"title": "OutcomeEvent", "$schema": "https://json-schema.org/draft/2020-12/schema"}
    )
    return {"job-request.schema.json": request, "outcome-event.schema.json": event}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        path = directory / name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1] if len(sys.argv) > 1 else "schemas")):
        print(path)

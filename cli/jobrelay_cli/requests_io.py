"""Reading request files: a FILE holds one request object or a JSON array of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class RequestFileError(ValueError):
    """A request file that cannot be read as JSON requests."""


def read_requests(paths: list[Path]) -> list[dict[str, Any] | str]:
    """Every request in the files, in order. Objects stay objects; what is not an object is
    kept as its raw JSON text so the system (not the CLI) answers it with a rejection."""
    requests: list[dict[str, Any] | str] = []
    for path in paths:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise RequestFileError(f"{path}: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise RequestFileError(f"{path}: not JSON ({exc})") from exc
        items = document if isinstance(document, list) else [document]
        for item in items:
            requests.append(item if isinstance(item, dict) else json.dumps(item))
    return requests


def request_id_of(request: dict[str, Any] | str) -> str | None:
    if isinstance(request, dict) and isinstance(request.get("request_id"), str):
        return str(request["request_id"])
    return None

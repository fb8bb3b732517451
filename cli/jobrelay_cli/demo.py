"""The demo: the sample requests in `events/requests/`, with the emulator behaviour that makes
each one end the way its `metadata.demo_expect` says."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jobrelay_cli.template import PROJECT_ROOT

DEMO_REQUESTS_DIR = PROJECT_ROOT / "events" / "requests"

# The sample requests' targets (a pipeline or workflow id in their params) -> the behaviour
# of the job the provider's emulator runs for them.
DEMO_TARGETS: dict[str, dict[str, Any]] = {
    "7d7b2a3c-1e2f-4a5b-8c9d-0e1f2a3b4c5d": {"queued": 1.0, "duration": 6.0},
    "wf-ndvi-weekly": {"queued": 0.5, "duration": 8.0},
    "wf-demo-fails": {"queued": 0.5, "duration": 4.0, "outcome": "failure"},
    "pl-hubspot-to-warehouse": {"queued": 1.0, "duration": 5.0},
    "pl-demo-slow": {"queued": 0.5, "duration": 600.0},
}


def demo_targets(requests: Iterable[dict[str, Any] | str]) -> dict[str, dict[str, dict[str, Any]]]:
    """provider -> target -> behaviour, for each demo target a request names in its params."""
    targets: dict[str, dict[str, dict[str, Any]]] = {}
    for request in requests:
        if not isinstance(request, dict):
            continue
        for value in (request.get("params") or {}).values():
            if isinstance(value, str) and value in DEMO_TARGETS:
                targets.setdefault(str(request["provider"]), {})[value] = DEMO_TARGETS[value]
    return targets


def expected_type(request: dict[str, Any]) -> str | None:
    expect = (request.get("metadata") or {}).get("demo_expect")
    return f"jobrelay.job.{expect}" if isinstance(expect, str) else None

"""What a fresh handler process loads (the cold start's budget), and the process-wide caches
that keep warm invocations from paying it again. No timing is asserted: `make bench`
measures the seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from jobrelay import aws
from jobrelay.providers.pool import tls_context

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = {
    "create_job": ROOT / "functions" / "create_job" / "app.py",
    "poll_job_status": ROOT / "functions" / "poll_job_status" / "app.py",
    "publish_outcome": ROOT / "functions" / "publish_outcome" / "app.py",
}
# Heavy modules no handler needs unless a feature asks for it.
NEVER_AT_IMPORT = (
    "aws_xray_sdk",  # only with TraceCalls on
    "aws_lambda_powertools.utilities.parser",  # ~0.2 s; jobrelay's models validate bodies
)
# What only CreateJob or PublishOutcome need: PollJobStatus (the most frequent cold start,
# once per poll round that lands on a new environment) never loads it.
NOT_IN_POLL = (
    "jobrelay.creation",
    "jobrelay.outcome",
    "aws_lambda_powertools.utilities.idempotency",
    "aws_lambda_powertools.utilities.batch",
)

PROBE = r"""
import importlib.util, json, sys
path = sys.argv[1]
spec = importlib.util.spec_from_file_location("app", path)
app = importlib.util.module_from_spec(spec)
sys.path.insert(0, path.rsplit("/", 1)[0])
spec.loader.exec_module(app)
depth, handler = 0, app.lambda_handler
while hasattr(handler, "__wrapped__"):
    depth, handler = depth + 1, handler.__wrapped__
print(json.dumps({"modules": sorted(sys.modules), "decorators": depth}))
"""


def _import_handler(name: str, *then: str, **environ: str) -> dict[str, Any]:
    """What importing the handler (then the modules `then`, as its first event would) loads."""
    env = {**os.environ, **environ}
    probe = PROBE.replace(
        "depth, handler = 0", "".join(f"import {m}\n" for m in then) + "depth, handler = 0"
    )
    return _probe_answer(env, probe, str(HANDLERS[name]))


def _probe_answer(env: dict[str, str], probe: str, *args: str) -> dict[str, Any]:
    """The JSON a probe prints last, run in a new interpreter of ours."""
    result = subprocess.run(  # noqa: S603 - our interpreter, our probe
        [sys.executable, "-c", probe, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    answer: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return answer


def _loaded(modules: list[str], name: str) -> bool:
    return any(m == name or m.startswith(name + ".") for m in modules)


@pytest.mark.parametrize("handler", sorted(HANDLERS))
def test_handlers_import_no_tracing_sdk_and_no_parser_when_tracing_is_off(handler: str) -> None:
    loaded = _import_handler(handler, POWERTOOLS_TRACE_DISABLED="true")["modules"]
    for heavy in NEVER_AT_IMPORT:
        assert not _loaded(loaded, heavy), f"{handler} imports {heavy}"


def test_create_job_batch_processing_loads_no_parser_models() -> None:
    # Powertools' batch types import the parser's event models when pydantic is loaded
    # before them; CreateJob imports the batch utility first, so its first event (which
    # imports jobrelay.intake) does not.
    loaded = _import_handler("create_job", "jobrelay.intake", POWERTOOLS_TRACE_DISABLED="true")
    assert _loaded(loaded["modules"], "aws_lambda_powertools.utilities.batch")
    assert not _loaded(loaded["modules"], "aws_lambda_powertools.utilities.parser")


def test_poll_job_status_imports_nothing_of_creation_idempotency_or_outcome() -> None:
    loaded = _import_handler("poll_job_status", POWERTOOLS_TRACE_DISABLED="true")["modules"]
    for module in NOT_IN_POLL:
        assert not _loaded(loaded, module), f"PollJobStatus imports {module}"


def test_tracing_on_wraps_the_handler_with_the_powertools_tracer() -> None:
    off = _import_handler("poll_job_status", POWERTOOLS_TRACE_DISABLED="true")
    on = _import_handler("poll_job_status", POWERTOOLS_TRACE_DISABLED="false")
    assert _loaded(on["modules"], "aws_xray_sdk")
    # The logger's decorator alone, then the logger's around the tracer's.
    assert (off["decorators"], on["decorators"]) == (1, 2)


def test_one_aws_client_per_service_even_when_threads_ask_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[str] = []
    gate = threading.Barrier(16)

    def fake_client(service: str, **_: Any) -> object:
        built.append(service)
        return object()

    aws.forget_clients()
    monkeypatch.setattr("jobrelay.aws.boto3.client", fake_client)
    results: list[object] = []

    def ask() -> None:
        gate.wait()
        results.append(aws.aws_client("dynamodb"))

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    aws.forget_clients()
    assert built == ["dynamodb"]
    assert len({id(client) for client in results}) == 1


def test_the_tls_context_verifies_and_is_built_once() -> None:
    import ssl

    context = tls_context()
    assert context is tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_publish_outcome_loads_the_limits_code_only_with_a_slot_to_free() -> None:
    # The limits gate is made with the first slot freed: an outcome whose job held none
    # (every job of a connection without `max_in_flight`) never loads it (cold start).
    probe = r"""
import json, sys
from jobrelay import wiring
service = wiring.publish_outcome_service()
before = "jobrelay.admission" in sys.modules or "jobrelay.aws_limits" in sys.modules
free = service.reporter.free_slot
print(json.dumps({"before": before, "freer": free is not None}))
"""
    env = {
        **os.environ,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_DEFAULT_REGION": "us-east-1",
        "EVENTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:events",
        "IDEMPOTENCY_TABLE": "jobs",
        "LIMITS_TABLE": "limits",
        "JOBS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/jobs",
    }
    assert _probe_answer(env, probe) == {"before": False, "freer": True}

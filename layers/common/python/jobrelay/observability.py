"""The one Powertools Logger, the handlers' tracing and the metrics writer of jobrelay,
shared by the handlers and the layer.

One Logger instance (instead of per-module child loggers) means layer code logs with the
handler's Lambda context and correlation keys whatever the import order, and never as an
orphan. Metrics are CloudWatch EMF lines, one per data point, because the
records of one CreateJob batch belong to different providers and so to different dimensions.

The X-Ray SDK (Powertools `Tracer`) is imported only when tracing is switched on
(`POWERTOOLS_TRACE_DISABLED` false: the template's `TraceCalls` parameter). Importing it and
building its sampler costs about 0.3 s of every cold start; with it off, Lambda's active
tracing still records each invocation and Step Functions traces each execution.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar, cast

from aws_lambda_powertools.logging import Logger
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
    AmazonCloudWatchEMFProvider,
)
from aws_lambda_powertools.shared.constants import TRACER_DISABLED_ENV
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "jobrelay")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "jobrelay")

logger = Logger(service=SERVICE)

Handler = TypeVar("Handler", bound=Callable[..., Any])


def tracing_enabled() -> bool:
    """Powertools' own reading of `POWERTOOLS_TRACE_DISABLED`."""
    return not resolve_truthy_env_var_choice(env=os.getenv(TRACER_DISABLED_ENV, "false"))


def capture_lambda_handler(handler: Handler) -> Handler:
    """Powertools `Tracer.capture_lambda_handler` when tracing is on; the handler as it is
    otherwise (and the X-Ray SDK never imported)."""
    if not tracing_enabled():
        return handler
    from aws_lambda_powertools import Tracer

    return cast(Handler, Tracer(service=SERVICE).capture_lambda_handler(handler))


OUTCOME_METRICS = {
    "SUCCEEDED": "JobsSucceeded",
    "FAILED": "JobsFailed",
    "TIMED_OUT": "JobsTimedOut",
    "CANCELLED": "JobsCancelled",
    "REJECTED": "JobsRejected",
    "VALIDATED": "JobsValidated",
}


def record_metric(name: str, value: float, unit: MetricUnit, **dimensions: str) -> None:
    """Emit one EMF data point with `service` plus the given dimensions.

    Written in one write under the log handler's lock: CreateJob handles records in threads,
    and an EMF line glued to a log line is lost to CloudWatch's metric extraction.
    """
    if is_metrics_disabled():
        return
    emf = AmazonCloudWatchEMFProvider(namespace=NAMESPACE, default_dimensions={"service": SERVICE})
    emf.add_metric(name=name, unit=unit, value=value)
    for key, dimension in dimensions.items():
        emf.add_dimension(name=key, value=dimension)
    # The request id rides along as EMF metadata (searchable, not a dimension), so a metric
    # line can be traced to its request like a log line.
    keys = {**logger.get_current_keys(), **logger.thread_safe_get_current_keys()}
    if keys.get("request_id"):
        emf.add_metadata(key="request_id", value=str(keys["request_id"]))
    line = json.dumps(emf.serialize_metric_set(), separators=(",", ":")) + "\n"
    handler = logger.registered_handler
    handler.acquire()
    try:
        sys.stdout.write(line)
        sys.stdout.flush()
    finally:
        handler.release()


def count_job(name: str, provider: str | None) -> None:
    record_metric(name, 1, MetricUnit.Count, provider=provider or "unknown")

"""The one Powertools Logger, Tracer and metrics writer of jobrelay, shared by the handlers
and the layer.

One Logger instance (instead of per-module child loggers) means layer code logs with the
handler's Lambda context and correlation keys whatever the import order, and never as an
orphan. Metrics are CloudWatch EMF lines, one per data point (`single_metric`), because the
records of one CreateJob batch belong to different providers and so to different dimensions.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "jobrelay")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "jobrelay")

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)

OUTCOME_METRICS = {
    "SUCCEEDED": "JobsSucceeded",
    "FAILED": "JobsFailed",
    "TIMED_OUT": "JobsTimedOut",
    "CANCELLED": "JobsCancelled",
    "REJECTED": "JobsRejected",
    "VALIDATED": "JobsValidated",
}


def record_metric(name: str, value: float, unit: MetricUnit, **dimensions: str) -> None:
    """Emit one EMF data point with `service` plus the given dimensions."""
    with single_metric(
        name=name,
        unit=unit,
        value=value,
        namespace=NAMESPACE,
        default_dimensions={"service": SERVICE},
    ) as metric:
        for key, dimension in dimensions.items():
            metric.add_dimension(name=key, value=dimension)


def count_job(name: str, provider: str | None) -> None:
    record_metric(name, 1, MetricUnit.Count, provider=provider or "unknown")

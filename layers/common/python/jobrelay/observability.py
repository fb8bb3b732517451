"""The one Powertools Logger and Tracer of jobrelay, shared by the handlers and the layer.

One instance (instead of per-module child loggers) means layer code logs with the handler's
Lambda context and correlation keys whatever the import order, and never as an orphan.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Tracer

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "jobrelay")

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)

"""The local stack's settings: moto's config, fast template parameters for a laptop, and
what the `JOBRELAY_*` environment variables override."""

from __future__ import annotations

import os
from collections.abc import Mapping

from jobrelay.registry import PROVIDER_NAMES, REGISTRY
from moto.core.config import DefaultConfig

DEFAULT_REGION = "us-east-1"
MOTO_CONFIG: DefaultConfig = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}
# Fast defaults for a laptop: poll every 2 s, give up on a job after 10 minutes. Each can be
# overridden with JOBRELAY_<PARAMETER> (e.g. JOBRELAY_POLL_INTERVAL_SECONDS=5).
LOCAL_PARAMETERS = {
    "PollIntervalSeconds": "2",
    "FirstPollSeconds": "1",
    "DefaultDeadlineSeconds": "600",
    "ProviderOutageWaitSeconds": "3",
    "CreateJobBatchingWindowSeconds": "0",
}
LOCAL_ENV_OVERRIDES = {
    "JOBRELAY_POLL_INTERVAL_SECONDS": "PollIntervalSeconds",
    "JOBRELAY_FIRST_POLL_SECONDS": "FirstPollSeconds",
    "JOBRELAY_DEFAULT_DEADLINE_SECONDS": "DefaultDeadlineSeconds",
    "JOBRELAY_PROVIDER_OUTAGE_WAIT_SECONDS": "ProviderOutageWaitSeconds",
    "JOBRELAY_MAX_RECEIVE_COUNT": "MaxReceiveCount",
}
# A connection's base URL may only name loopback locally (the template's default is each
# provider's public hosts): no traffic leaves the machine.
LOCAL_ALLOWED_HOSTS = "127.0.0.1,localhost"
# What the local stack sets in the functions' environment beyond the template: connections
# (and keys) are read afresh every 2 s, so a connection added while the stack runs is used
# within seconds (the layer's default is 300 s, which on AWS keeps Secrets Manager calls
# rare). JOBRELAY_SECRET_MAX_AGE_SECONDS overrides it.
LOCAL_FUNCTION_ENVIRONMENT = {"SECRET_MAX_AGE_SECONDS": "2"}
# CreateJob invocations run at once by the local queue poller: one, below the template's
# MaximumConcurrency. Lambda gives each invocation a sandbox of its own; here they would
# share one process, and the layer's batch processor (jobrelay.intake's module-level
# `processor`, which keeps the batch being processed on itself) is not safe to share.
LOCAL_CREATE_JOB_CONCURRENCY = 1
# The template's visibility timeout (6x CreateJob's timeout) is right on AWS but makes a
# local retry wait six minutes; the local stack shortens it (JOBRELAY_VISIBILITY_TIMEOUT).
LOCAL_VISIBILITY_TIMEOUT = 3


def ensure_fake_aws_environment() -> None:
    """Credentials and region for moto; never real ones (setdefault keeps a caller's fakes)."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", DEFAULT_REGION)
    os.environ.setdefault("AWS_REGION", os.environ["AWS_DEFAULT_REGION"])
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")


def parameters_from(env: Mapping[str, str]) -> dict[str, str]:
    """The local template parameters, with the `JOBRELAY_*` overrides set in `env`."""
    parameters = dict(LOCAL_PARAMETERS)
    for entry in REGISTRY.values():
        parameters[entry.allowed_hosts_parameter] = LOCAL_ALLOWED_HOSTS
    for variable, parameter in LOCAL_ENV_OVERRIDES.items():
        if env.get(variable):
            parameters[parameter] = env[variable]
    return parameters


def function_environment_from(env: Mapping[str, str]) -> dict[str, str]:
    """What the local stack adds to the functions' environment, with its `JOBRELAY_*`
    overrides."""
    environment = dict(LOCAL_FUNCTION_ENVIRONMENT)
    if env.get("JOBRELAY_SECRET_MAX_AGE_SECONDS"):
        environment["SECRET_MAX_AGE_SECONDS"] = env["JOBRELAY_SECRET_MAX_AGE_SECONDS"]
    return environment


def per_provider_from(env: Mapping[str, str], suffix: str) -> dict[str, str]:
    """`JOBRELAY_<PROVIDER>_<suffix>` of each registered provider that `env` sets."""
    values = {name: env.get(f"JOBRELAY_{name.upper()}_{suffix}", "") for name in PROVIDER_NAMES}
    return {name: value for name, value in values.items() if value}

"""The local stack's settings: moto's config, fast template parameters for a laptop, and
what the `JOBRELAY_*` environment variables override."""

from __future__ import annotations

import os
from collections.abc import Mapping

from jobrelay.registry import PROVIDER_NAMES
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
    for variable, parameter in LOCAL_ENV_OVERRIDES.items():
        if env.get(variable):
            parameters[parameter] = env[variable]
    return parameters


def per_provider_from(env: Mapping[str, str], suffix: str) -> dict[str, str]:
    """`JOBRELAY_<PROVIDER>_<suffix>` of each registered provider that `env` sets."""
    values = {name: env.get(f"JOBRELAY_{name.upper()}_{suffix}", "") for name in PROVIDER_NAMES}
    return {name: value for name, value in values.items() if value}

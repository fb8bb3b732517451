"""The fault suite's stack: one local stack per module (the integration `Harness`,
imported) on which every selected scenario is played at once; the tests then judge it
scenario by scenario. Module-scoped, so moto and the emulators are gone before other suites.

Matatika runs with OAuth client credentials here (the secret holds a client id and secret
and the emulator's token URL), so a 401 exercises the token refresh path.

Limits are on: each provider's default connection is a connection secret (named after the
provider, so requests without `connection` use it) with a `max_in_flight` above the run's
requests, so every request takes a slot and must free it on whatever path it ends; the
suite then checks no slot is left held.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from jobrelay.registry import PROVIDER_NAMES, REGISTRY
from jobrelay_local.emulators.matatika import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from jobrelay_local.runtime import LocalStack

from tests.faults.figures import FIGURES_KEY
from tests.faults.play import FaultRun, play
from tests.faults.scenarios import BY_ID, HTTP_TIMEOUT_SECONDS, Scenario
from tests.integration.conftest import Harness

# More than the requests of a whole run: limits are exercised, nothing waits.
SLOTS_PER_PROVIDER = 1000


@pytest.fixture(scope="module")
def fault_stack() -> Iterator[Harness]:
    local = LocalStack(
        feed_queue=False,
        visibility_timeout=1,
        environ={},
        parameters={
            "PollIntervalSeconds": "1",
            "FirstPollSeconds": "1",
            "HttpTimeoutSeconds": str(int(HTTP_TIMEOUT_SECONDS)),
            "ProviderOutageWaitSeconds": "1",
            "MaxReceiveCount": "5",
            **{f"{name.capitalize()}AllowedHosts": "127.0.0.1" for name in PROVIDER_NAMES},
        },
    )
    with local:
        harness = Harness(local)
        matatika = harness.emulators["matatika"]
        client = {
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
            "token_url": f"{matatika.url}/oauth/token",
        }
        secrets = boto3.client("secretsmanager")
        secrets.put_secret_value(
            SecretId=harness.stack.parameters["MatatikaApiKeySecretArn"],
            SecretString=json.dumps(client),
        )
        limit_default_connections(harness, client)
        yield harness


def limit_default_connections(harness: Harness, matatika_client: dict[str, str]) -> None:
    """Each provider's default as a connection with a cap no request of the run reaches."""
    secrets = boto3.client("secretsmanager")
    prefix = harness.stack.functions["CreateJobFunction"].environment["CONNECTIONS_PREFIX"]
    for name in PROVIDER_NAMES:
        entry = REGISTRY[name]
        key = secrets.get_secret_value(SecretId=harness.stack.parameters[entry.secret_parameter])
        credential = matatika_client if name == "matatika" else {"api_key": key["SecretString"]}
        document = {
            "provider": name,
            "base_url": harness.emulators[name].url,
            "max_in_flight": SLOTS_PER_PROVIDER,
            **credential,
        }
        secrets.create_secret(Name=prefix + name, SecretString=json.dumps(document))


def selected_scenarios(session: pytest.Session) -> list[Scenario]:
    """The scenarios of the collected (selected) tests, so `-k` runs only what it names."""
    chosen: dict[str, Scenario] = {}
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        scenario = callspec.params.get("scenario") if callspec else None
        if isinstance(scenario, Scenario):
            chosen[scenario.id] = BY_ID[scenario.id]
    # Only tests without a scenario selected (the summary test): play them all.
    return list(chosen.values()) or list(BY_ID.values())


@pytest.fixture(scope="module")
def fault_run(fault_stack: Harness, request: pytest.FixtureRequest) -> FaultRun:
    scenarios = selected_scenarios(request.session)
    run = play(fault_stack, scenarios)
    survivable = [s.request_id for s in scenarios if not s.known_bug]
    verdicts = [run.report.verdicts[key] for key in survivable]
    request.config.stash[FIGURES_KEY] = {
        "scenarios run": len(scenarios),
        "requests": len(scenarios),
        "messages sent": run.messages_sent,
        "faults applied": sum(1 for r in run.results.values() if r.fault and r.fault.applied),
        "outcomes lost": sum(v.lost for v in verdicts),
        "duplicate remote jobs": sum(max(0, len(v.remote_jobs) - 1) for v in verdicts),
        "duplicate outcome events": sum(max(0, len(v.events) - 1) for v in verdicts),
        "known-bug scenarios (xfail)": len(scenarios) - len(survivable),
        "seconds": round(run.seconds, 1),
    }
    return run

"""The fault suite's stack: one local stack per module (the integration `Harness`,
imported) on which every selected scenario is played at once; the tests then judge it
scenario by scenario. Module-scoped, so moto and the emulators are gone before other suites.

Matatika runs with OAuth client credentials here (the secret holds a client id and secret
and the emulator's token URL), so a 401 exercises the token refresh path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from jobrelay_local.emulators.matatika import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from jobrelay_local.runtime import LocalStack

from tests.faults.play import FaultRun, play
from tests.faults.scenarios import BY_ID, HTTP_TIMEOUT_SECONDS, Scenario
from tests.integration.conftest import Harness

FIGURES_KEY = pytest.StashKey[dict[str, Any]]()


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
        },
    )
    with local:
        harness = Harness(local)
        matatika = harness.emulators["matatika"]
        boto3.client("secretsmanager").put_secret_value(
            SecretId=harness.stack.parameters["MatatikaApiKeySecretArn"],
            SecretString=json.dumps(
                {
                    "client_id": DEFAULT_CLIENT_ID,
                    "client_secret": DEFAULT_CLIENT_SECRET,
                    "token_url": f"{matatika.url}/oauth/token",
                }
            ),
        )
        yield harness


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


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    figures = config.stash.get(FIGURES_KEY, None)
    if figures:
        terminalreporter.section("jobrelay fault suite figures")
        for name, value in figures.items():
            terminalreporter.write_line(f"{name}: {value}")

"""Every test runs against fake AWS credentials: nothing can reach a real account."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.faults.figures import FIGURES_KEY, TITLE, WORKEROUTPUT_KEY

for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "jobrelay",
}.items():
    os.environ[_name] = _value
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_ENDPOINT_URL", None)


# The fault suite's figures at the end of the run, from whichever process played it: with
# pytest-xdist (`make test`), a worker sends them to the controller, which prints them.
def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput: dict[str, Any] | None = getattr(session.config, "workeroutput", None)
    figures = session.config.stash.get(FIGURES_KEY, None)
    if workeroutput is not None and figures:
        workeroutput[WORKEROUTPUT_KEY] = dict(figures)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    figures = getattr(node, "workeroutput", {}).get(WORKEROUTPUT_KEY)
    if figures:
        node.config.stash[FIGURES_KEY] = dict(figures)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    figures = config.stash.get(FIGURES_KEY, None)
    if figures:
        terminalreporter.section(TITLE)
        for name, value in figures.items():
            terminalreporter.write_line(f"{name}: {value}")

"""End-to-end fixtures: the `jobrelay` CLI in a subprocess, pointed at emulators that the
test starts and scripts (through their Python API) in this process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from jobrelay_local.emulators import EmulatorServer, start_all, stop_all

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KEYS = {"deepset": "e2e-deepset-key", "pixxel": "e2e-pixxel-key", "matatika": "e2e-matatika-key"}


@pytest.fixture
def emulators() -> Iterator[dict[str, EmulatorServer]]:
    servers = start_all(api_keys=KEYS)
    try:
        yield servers
    finally:
        stop_all(servers)


@pytest.fixture
def cli_env(emulators: dict[str, EmulatorServer], tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT")}
    for name, server in emulators.items():
        env[f"JOBRELAY_{name.upper()}_BASE_URL"] = server.url
        env[f"JOBRELAY_{name.upper()}_API_KEY"] = KEYS[name]
    env["JOBRELAY_STATE_DIR"] = str(tmp_path / "state")
    env["JOBRELAY_POLL_INTERVAL_SECONDS"] = "1"
    env["JOBRELAY_VISIBILITY_TIMEOUT"] = "2"
    return env


def jobrelay(
    args: list[str], env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI, arguments from the test
        [sys.executable, "-m", "jobrelay_cli", *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_requests(path: Path, *requests: dict[str, Any]) -> Path:
    path.write_text(json.dumps(list(requests)), encoding="utf-8")
    return path


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def without_aws(env: dict[str, str]) -> dict[str, str]:
    """The environment of a machine with no AWS configuration at all."""
    return {k: v for k, v in env.items() if not k.startswith("AWS_")}


def interrupt(process: subprocess.Popen[Any], timeout: float = 20) -> None:
    """Ctrl-C to a CLI command run in the background; killed if it has not left within
    `timeout` seconds."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def jobrelay_up(env: dict[str, str]) -> Iterator[int]:
    """`jobrelay up` in a subprocess on a free port, until its state file says it runs;
    stopped with Ctrl-C (SIGINT) at the end. Yields the port of its AWS endpoint."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    state = Path(env["JOBRELAY_STATE_DIR"]) / "stack.json"
    up = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "jobrelay_cli", "up", "--port", str(port)],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C reaches it even where this run's SIGINT is ignored (see test_steering).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while not state.exists():
            assert up.poll() is None, up.stderr.read() if up.stderr else ""
            assert time.monotonic() < deadline, "jobrelay up did not come up"
            time.sleep(0.2)
        yield port
    finally:
        interrupt(up)

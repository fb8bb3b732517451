"""Steering a request through the CLI against a running `jobrelay up`, on a machine with no
AWS configuration: `status`, `jobs`, `watch` and `cancel`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import pytest

from tests.e2e.conftest import (
    PROJECT_ROOT,
    interrupt,
    jobrelay,
    jobrelay_up,
    json_lines,
    without_aws,
    write_requests,
)
from tests.e2e.test_cli import matatika

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack_env(emulators, cli_env, tmp_path) -> Iterator[dict[str, str]]:
    """A running `jobrelay up` and the environment of a machine with no AWS variables or files."""
    env = without_aws(cli_env)
    env["HOME"] = str(tmp_path)
    with jobrelay_up(env):
        yield env


def status(request_id: str, env: dict[str, str]) -> dict[str, Any]:
    shown = jobrelay(["status", request_id, "--json"], env, timeout=60)
    assert shown.returncode == 0, shown.stderr[-2000:]
    lines = json_lines(shown.stdout)
    assert len(lines) == 1, shown.stdout
    return lines[0]


def status_once_created(request_id: str, env: dict[str, str]) -> dict[str, Any]:
    """Its status, or {} while CreateJob has not yet taken the request from the queue."""
    shown = jobrelay(["status", request_id, "--json"], env, timeout=60)
    if shown.returncode == 1 and "no request" in shown.stderr:
        return {}
    assert shown.returncode == 0, shown.stderr[-2000:]
    (line,) = json_lines(shown.stdout)
    return line


def eventually(
    read: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool], within: float
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    seen = read()
    while not done(seen) and time.monotonic() < deadline:
        time.sleep(1)
        seen = read()
    return seen


def watch_until_shown(text: str, env: dict[str, str], within: float = 60) -> tuple[str, int, str]:
    """`jobrelay watch` until its live table shows `text`, then Ctrl-C; returns (its output,
    its exit code, its stderr). It runs as in a terminal (rich's TTY_COMPATIBLE), so each
    refresh reaches the pipe as it is drawn, not only the last one at exit."""
    watch = subprocess.Popen(
        [sys.executable, "-m", "jobrelay_cli", "watch", "--interval", "0.5"],
        env={**env, "TTY_COMPATIBLE": "1", "TERM": "xterm", "COLUMNS": "200"},
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # Ctrl-C reaches it even when this run's SIGINT is ignored (a test run started in
        # the background of a shell without job control): Python installs its handler only
        # where SIGINT is not ignored at start.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert watch.stdout is not None
    assert watch.stderr is not None
    chunks: list[bytes] = []
    shown = threading.Event()

    def read(stream: IO[bytes]) -> None:
        for chunk in iter(lambda: os.read(stream.fileno(), 65536), b""):
            chunks.append(chunk)
            if text.encode() in b"".join(chunks):
                shown.set()

    reader = threading.Thread(target=read, args=(watch.stdout,), daemon=True)
    reader.start()
    try:
        shown.wait(within)
    finally:
        interrupt(watch)
    reader.join(timeout=10)
    errors = watch.stderr.read().decode(errors="replace")
    return b"".join(chunks).decode(errors="replace"), watch.returncode, errors


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_status_and_jobs_follow_a_long_job_that_cancel_then_ends(emulators, stack_env, tmp_path):
    # Given a long Matatika job submitted to a running local stack
    emulators["matatika"].configure(queued=0.2, duration=600)
    file = write_requests(tmp_path / "r.json", matatika("e2e-steer", "pl-steer"))
    submitted = jobrelay(["submit", str(file)], stack_env, timeout=60)
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    # When its status is asked: it is tracked, by an execution with its console link
    tracked = eventually(
        lambda: status_once_created("e2e-steer", stack_env),
        lambda s: bool(s.get("polls")),
        within=60,
    )
    assert tracked["provider"] == "matatika"
    assert tracked["remote_job_id"] == emulators["matatika"].jobs()[0]["id"]
    assert tracked["status"] in ("QUEUED", "RUNNING")
    assert ":execution:" in tracked["execution_arn"]
    assert tracked["execution_arn"] in tracked["console_url"]
    assert tracked["next_poll_at"] is not None
    assert tracked["cancel"] is None
    assert tracked["outcome"] is None
    # and the jobs in flight list it, for its provider and not for another
    listed = jobrelay(["jobs", "--json"], stack_env, timeout=60)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert [j["request_id"] for j in json_lines(listed.stdout)] == ["e2e-steer"]
    assert json_lines(listed.stdout)[0]["next_poll_at"]
    other = jobrelay(["jobs", "--json", "--provider", "pixxel"], stack_env, timeout=60)
    assert json_lines(other.stdout) == []
    # and watch shows it live until Ctrl-C, which leaves with status 0
    watched, code, errors = watch_until_shown("e2e-steer", stack_env)
    assert code == 0, errors[-2000:]
    assert "e2e-steer" in watched
    # When it is cancelled with a reason
    cancelled = jobrelay(
        ["cancel", "e2e-steer", "--reason", "no longer needed"], stack_env, timeout=60
    )
    assert cancelled.returncode == 0, cancelled.stderr[-2000:]
    assert cancelled.stdout.startswith("cancel sent for e2e-steer (message ")
    # Then status shows the cancel asked for
    asked = eventually(
        lambda: status("e2e-steer", stack_env), lambda s: s["cancel"] is not None, within=30
    )
    assert asked["cancel"]["reason"] == "no longer needed"
    assert asked["cancel"]["requested_by"] == "jobrelay cli"


def test_a_cancelled_request_ends_in_one_cancelled_outcome_shown_by_status(
    emulators, stack_env, tmp_path
):
    # Given a long Matatika job being tracked
    emulators["matatika"].configure(queued=0.2, duration=600)
    file = write_requests(tmp_path / "r.json", matatika("e2e-stop", "pl-stop"))
    assert jobrelay(["submit", str(file)], stack_env, timeout=60).returncode == 0
    eventually(
        lambda: status_once_created("e2e-stop", stack_env),
        lambda s: bool(s.get("polls")),
        within=60,
    )
    # When it is cancelled
    assert jobrelay(["cancel", "e2e-stop"], stack_env, timeout=60).returncode == 0
    # Then status shows the cancelled outcome, the job is stopped, and one event was published
    ended = eventually(
        lambda: status("e2e-stop", stack_env), lambda s: s["outcome"] is not None, within=45
    )
    assert ended["outcome"]["type"] == "jobrelay.job.cancelled"
    assert ended["status"] == "CANCELLED"
    assert ended["next_poll_at"] is None
    assert ended["cancel"]["requested_by"] == "jobrelay cli"
    assert emulators["matatika"].jobs()[0]["status"] == "STOPPED"
    events = json_lines(jobrelay(["events", "--json"], stack_env, timeout=60).stdout)
    assert [e["type"] for e in events if e["data"]["request_id"] == "e2e-stop"] == [
        "jobrelay.job.cancelled"
    ]
    assert [e["id"] for e in events if e["data"]["request_id"] == "e2e-stop"] == [
        ended["outcome"]["id"]
    ]
    listed = jobrelay(["jobs", "--json"], stack_env, timeout=60)
    assert "e2e-stop" not in listed.stdout


def test_status_of_an_unknown_id_and_a_malformed_cancel_say_so_in_one_line(stack_env):
    unknown = one_line_error(jobrelay(["status", "nobody-sent-this"], stack_env, timeout=60), 1)
    assert "no request nobody-sent-this in this stack" in unknown
    bad = jobrelay(["cancel", "x" * 200], stack_env, timeout=60)
    assert "request_id" in one_line_error(bad, 2)
    long_reason = jobrelay(["cancel", "e2e-any", "--reason", "r" * 1001], stack_env, timeout=60)
    assert "reason" in one_line_error(long_reason, 2)


@pytest.mark.parametrize(
    "args", [["status", "r1"], ["jobs"], ["watch"], ["cancel", "r1", "--reason", "x"]]
)
def test_a_steering_command_without_a_stack_says_what_to_do_in_one_line(tmp_path, args):
    env = without_aws(dict(os.environ))
    env.update({"HOME": str(tmp_path), "JOBRELAY_STATE_DIR": str(tmp_path / "state")})
    line = one_line_error(jobrelay(args, env, timeout=60), 2)
    assert "no local stack is running: start `jobrelay up`" in line

"""`jobrelay up`, `run` and `demo`: the embedded local stack, in the foreground or for one
batch of requests. The only commands that import it (`jobrelay_local`: moto and the rest)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from jobrelay_cli.console import console, out, print_outcomes
from jobrelay_cli.errors import CommandError, operation
from jobrelay_cli.live_view import outcomes_of, progress_table
from jobrelay_cli.options import ConnectionsFile, Files, JsonFlag, connections_from, requests_from
from jobrelay_cli.requests_io import request_id_of
from jobrelay_cli.state import EVENTS_FILE, LOGS_FILE, METRICS_FILE, STATE_DIR, STATE_FILE

if TYPE_CHECKING:
    from jobrelay_local.connections_file import LocalConnection
    from jobrelay_local.runtime import LocalStack


def _local_stack(**options: Any) -> LocalStack:
    """The embedded stack, its functions' logs and metrics and the libraries' logs in files."""
    from jobrelay_local.runtime import LocalStack

    return LocalStack(log_file=LOGS_FILE, metrics_file=METRICS_FILE, log_dir=STATE_DIR, **options)


def _started(local: LocalStack) -> LocalStack:
    """The stack started; a connection it cannot place fails in one line, stack stopped."""
    from jobrelay_local.connections_file import ConnectionsFileError

    try:
        local.start()
    except ConnectionsFileError as exc:
        raise CommandError(str(exc), exit_code=2) from None
    for note in local.connection_notes:
        console.print(note, markup=False, highlight=False)
    return local


@contextmanager
def _running(local: LocalStack) -> Iterator[LocalStack]:
    _started(local)
    try:
        yield local
    finally:
        local.stop()


def connections_state(local: LocalStack) -> dict[str, Any]:
    """What `jobrelay up` records for commands that add connections: where the functions
    read them, and which emulators are the stack's own (to accept their credentials)."""
    return {
        "connections_prefix": local.connections_prefix,
        "emulators": {name: server.url for name, server in local.emulators.items()},
    }


@operation
def up(
    port: Annotated[int, typer.Option(help="Port of the local AWS endpoint.")] = 5000,
    connections: ConnectionsFile = None,
) -> None:
    """Start the local stack in the foreground (Ctrl-C stops it)."""
    known = connections_from(connections)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    EVENTS_FILE.write_text("", encoding="utf-8")
    local = _started(_local_stack(server_port=port, connections=known))
    stack = local.require_stack()
    state = {
        "endpoint_url": local.endpoint_url,
        "region": stack.region,
        "outputs": stack.outputs,
        "providers": local.provider_urls,
        **connections_state(local),
        "events_file": str(EVENTS_FILE.resolve()),
        "pid": os.getpid(),
    }
    STATE_FILE.write_text(json.dumps(state, indent=2), encoding="utf-8")
    table = Table(title="jobrelay local stack", show_header=False)
    table.add_row("AWS endpoint", str(local.endpoint_url))
    table.add_row("Region", stack.region)
    table.add_row("Requests queue", stack.queue_url)
    table.add_row("Dead-letter queue", stack.dlq_url)
    table.add_row("Events topic", stack.topic_arn)
    table.add_row("State machine", stack.state_machine_arn)
    for name, url in local.provider_urls.items():
        table.add_row(f"{name} API", url)
    for name, placed in local.placed_connections.items():
        table.add_row(f"connection {name}", f"{placed.provider} at {placed.base_url}")
    out.print(table)
    out.print(
        f"Point boto3 or the AWS CLI at it: AWS_ENDPOINT_URL={local.endpoint_url} "
        "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "
        f"AWS_DEFAULT_REGION={stack.region}"
    )
    out.print("Then: jobrelay submit FILE --wait | jobrelay events --follow. Ctrl-C stops.")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        with EVENTS_FILE.open("a", encoding="utf-8") as sink_file:
            while not stopping.is_set():
                assert local.sink is not None
                before = len(local.sink.raw)
                local.sink.drain()
                for raw in local.sink.raw[before:]:
                    sink_file.write(raw + "\n")
                sink_file.flush()
                stopping.wait(0.3)
    except KeyboardInterrupt:
        pass
    finally:
        local.stop()
        STATE_FILE.unlink(missing_ok=True)
        out.print("stopped")


def _run(
    requests: list[dict[str, Any] | str],
    *,
    timeout: float,
    as_json: bool,
    targets: dict[str, dict[str, dict[str, Any]]] | None = None,
    live: bool = False,
    connections: list[LocalConnection] | None = None,
) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """An ephemeral stack: submit, wait for every outcome (or the timeout), print, stop."""
    console.print("starting the local stack…")
    with _running(_local_stack(connections=connections or [])) as local:
        for provider, by_target in (targets or {}).items():
            emulator = local.emulators.get(provider)
            for target, behaviour in by_target.items():
                if emulator is not None:
                    emulator.configure_target(target, **behaviour)
        ids = []
        for request in requests:
            message_id = local.submit(request)
            ids.append(request_id_of(request) or message_id)
        console.print(f"submitted {len(ids)} request(s); waiting for outcomes…")
        if live:
            with Live(
                progress_table(local, ids, {}), console=console, refresh_per_second=4
            ) as view:
                outcomes, open_ids = local.wait_for_outcomes(
                    ids,
                    timeout=timeout,
                    on_tick=lambda: view.update(
                        progress_table(local, ids, outcomes_of(local, ids))
                    ),
                )
                view.update(progress_table(local, ids, outcomes))
        else:
            outcomes, open_ids = local.wait_for_outcomes(ids, timeout=timeout)
        raw = {}
        if local.sink is not None:
            for line in local.sink.raw:
                raw[json.loads(line)["id"]] = line
        unique = list(dict.fromkeys(ids))  # a request sent twice still has one outcome
        print_outcomes([outcomes[i] for i in unique if i in outcomes], raw, as_json)
    return outcomes, open_ids


@operation
def run(
    files: Files,
    as_json: JsonFlag = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every outcome.")] = 300,
    connections: ConnectionsFile = None,
) -> None:
    """Start an ephemeral local stack, submit the requests, print each outcome, stop."""
    requests = requests_from(files)
    known = connections_from(connections)
    _, open_ids = _run(requests, timeout=timeout, as_json=as_json, connections=known)
    if open_ids:
        console.print(f"[red]no outcome within {timeout:.0f}s:[/] {', '.join(sorted(open_ids))}")
        raise typer.Exit(1)


def demo(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every outcome.")] = 150,
) -> None:
    """Run the sample requests of every provider with a live view of each job."""
    from jobrelay_cli.demo import DEMO_REQUESTS_DIR, demo_targets, expected_type

    started = time.monotonic()
    files = sorted(DEMO_REQUESTS_DIR.glob("*.json"))
    requests = requests_from(files)
    outcomes, open_ids = _run(
        requests, timeout=timeout, as_json=False, targets=demo_targets(requests), live=True
    )
    wrong = []
    for request in requests:
        if not isinstance(request, dict):
            continue
        want = expected_type(request)
        got = outcomes.get(str(request.get("request_id")), {}).get("type")
        if want and got != want:
            wrong.append(f"{request.get('request_id')}: expected {want}, got {got}")
    elapsed = time.monotonic() - started
    if wrong or open_ids:
        for line in wrong:
            console.print(f"[red]{line}[/]")
        raise typer.Exit(1)
    console.print(f"[green]demo passed:[/] {len(outcomes)} outcomes as expected in {elapsed:.1f}s")

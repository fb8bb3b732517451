"""`jobrelay submit`, `jobrelay events` and `jobrelay connections add`: requests into a
stack's queue, outcomes out, connections into a running local stack."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from jobrelay_cli.console import console, print_outcomes
from jobrelay_cli.errors import CommandError, operation
from jobrelay_cli.options import (
    Endpoint,
    Files,
    JsonFlag,
    Region,
    StackName,
    connections_from,
    requests_from,
)
from jobrelay_cli.requests_io import request_id_of
from jobrelay_cli.state import EVENTS_FILE, read_events_file, running_state
from jobrelay_cli.target import Stack, connect

if TYPE_CHECKING:
    from jobrelay_local.connections_file import LocalConnection

ON_AWS = (
    "connections are added to a local stack (jobrelay up); on AWS, create the connection's "
    "secret under the stack's ConnectionsSecretPrefix output"
)


@operation
def submit(
    files: Files,
    endpoint: Endpoint = None,
    stack_name: StackName = None,
    region: Region = None,
    wait: Annotated[
        bool, typer.Option(help="Wait for each request's outcome (local stack).")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 300,
    as_json: JsonFlag = False,
    connections: Annotated[
        Path | None,
        typer.Option(
            "--connections",
            help="Add these connections to the local stack (jobrelay up) first.",
        ),
    ] = None,
) -> None:
    """Send requests to a running stack's JobRequests queue."""
    requests = requests_from(files)
    known = connections_from(connections)
    stack = connect(endpoint, stack_name, region)
    if known:
        add_to_local_stack(stack, known)
    url, sqs = stack.output("JobRequestsQueueUrl"), stack.client("sqs")
    ids: list[str] = []
    for request in requests:
        body = request if isinstance(request, str) else json.dumps(request)
        message_id = sqs.send_message(QueueUrl=url, MessageBody=body)["MessageId"]
        ids.append(request_id_of(request) or message_id)
        console.print(f"sent {ids[-1]} (message {message_id})")
    if not wait:
        return
    if not stack.local:
        raise CommandError("--wait follows the events of a local stack (jobrelay up)", exit_code=2)
    deadline = time.monotonic() + timeout
    while True:
        events, raw = read_events_file()
        done = list(
            {e["id"]: e for e in events if e.get("data", {}).get("request_id") in ids}.values()
        )
        open_ids = set(ids) - {e["data"]["request_id"] for e in done}
        if not open_ids or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print_outcomes(done, raw, as_json)
    if open_ids:
        console.print(f"[red]still open after {timeout:.0f}s:[/] {', '.join(sorted(open_ids))}")
        raise typer.Exit(1)


def events(
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Show the outcome events a local stack (jobrelay up) has published."""
    if running_state() is None and not EVENTS_FILE.exists():
        console.print("[red]error:[/] no local stack: start one with `jobrelay up`")
        raise typer.Exit(2)
    shown = 0
    while True:
        published, raw = read_events_file()
        print_outcomes(published[shown:], raw, as_json)
        shown = len(published)
        if not follow:
            return
        try:
            time.sleep(0.5)
        except KeyboardInterrupt:
            return


def add_to_local_stack(stack: Stack, connections: list[LocalConnection]) -> None:
    """Store connections in a running `jobrelay up` as it stores its own: pointed at its
    emulators, the secrets where its functions read them, each credential a tenant of the
    stack's own emulator. Used within seconds (SECRET_MAX_AGE_SECONDS is 2 locally)."""
    from jobrelay_local.connections_file import (
        ConnectionsFileError,
        add_connections,
        is_loopback,
    )

    state = running_state()
    if not stack.local or state is None:
        raise CommandError(ON_AWS, exit_code=2)
    emulators: dict[str, str] = dict(state.get("emulators", {}))
    providers: dict[str, str] = dict(state.get("providers", {}))

    def emulator_url(provider: str) -> str | None:
        url = emulators.get(provider) or providers.get(provider)
        return url if url is not None and is_loopback(url) else None

    prefix = state.get("connections_prefix") or stack.output("ConnectionsSecretPrefix")
    try:
        placed = add_connections(
            connections,
            secretsmanager=stack.client("secretsmanager"),
            prefix=prefix,
            emulator_url=emulator_url,
            own_emulators=emulators,
        )
    except ConnectionsFileError as exc:
        raise CommandError(str(exc), exit_code=2) from None
    for connection in placed:
        if connection.note:
            console.print(connection.note, markup=False, highlight=False)
        console.print(
            f"added connection {connection.name!r} ({connection.provider}) as secret "
            f"{prefix}{connection.name}",
            markup=False,
            highlight=False,
        )


@operation
def connections_add(
    file: Annotated[Path, typer.Argument(help="YAML or JSON file of connections.")],
) -> None:
    """Add (or replace) connections in the running local stack (jobrelay up): pointed at its
    emulators, used within seconds. (`jobrelay connections add FILE`.)"""
    known = connections_from(file)
    add_to_local_stack(connect(None, None, None), known)

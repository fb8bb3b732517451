"""`jobrelay submit` and `jobrelay events`: requests into a stack's queue, outcomes out."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from jobrelay_cli.console import console, print_outcomes
from jobrelay_cli.errors import CommandError, operation
from jobrelay_cli.options import Endpoint, Files, JsonFlag, Region, StackName, requests_from
from jobrelay_cli.requests_io import request_id_of
from jobrelay_cli.state import EVENTS_FILE, read_events_file, running_state
from jobrelay_cli.target import connect


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
) -> None:
    """Send requests to a running stack's JobRequests queue."""
    requests = requests_from(files)
    stack = connect(endpoint, stack_name, region)
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

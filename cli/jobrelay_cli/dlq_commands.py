"""`jobrelay dlq`: the dead requests with their reason, and sending them back."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from jobrelay_cli.console import console, out
from jobrelay_cli.dlq import list_dead_letters, redrive
from jobrelay_cli.errors import operation
from jobrelay_cli.options import Endpoint, JsonFlag, Region, StackName
from jobrelay_cli.target import connect

dlq_app = typer.Typer(help="Dead requests: list them with their reason, send them back.")


@dlq_app.command("list")
@operation
def dlq_list(
    endpoint: Endpoint = None,
    stack_name: StackName = None,
    region: Region = None,
    as_json: JsonFlag = False,
) -> None:
    """Each request in the DLQ with its reason."""
    stack = connect(endpoint, stack_name, region)
    letters = list_dead_letters(stack.client("sqs"), stack.output("JobRequestsDLQUrl"))
    if as_json:
        for letter in letters:
            record = {
                "message_id": letter.message_id,
                "request_id": letter.request_id,
                "code": letter.code,
                "reason": letter.reason,
                "receive_count": letter.receive_count,
                "redrivable": letter.redrivable,
            }
            out.print(json.dumps(record), markup=False, highlight=False)
        return
    table = Table(title=f"{len(letters)} dead request(s)")
    for column in ("message", "request", "code", "reason", "redrive"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        table.add_row(
            letter.message_id,
            letter.request_id,
            letter.code or "MAX_RECEIVES",
            letter.reason,
            "yes" if letter.redrivable else "no: already rejected",
        )
    out.print(table)


@dlq_app.command("redrive")
@operation
def dlq_redrive(
    ids: Annotated[
        list[str] | None,
        typer.Option("--id", help="Message or request id (repeatable); default: all."),
    ] = None,
    endpoint: Endpoint = None,
    stack_name: StackName = None,
    region: Region = None,
) -> None:
    """Send dead requests back to the requests queue."""
    stack = connect(endpoint, stack_name, region)
    result = redrive(
        stack.client("sqs"),
        stack.output("JobRequestsDLQUrl"),
        stack.output("JobRequestsQueueUrl"),
        message_ids=set(ids) if ids else None,
    )
    for letter in result.redriven:
        out.print(f"redriven {letter.request_id} (message {letter.message_id})")
    rejected = [letter for letter in result.left if not letter.redrivable]
    if rejected:
        console.print(
            f"left {len(rejected)} rejected request(s): each was answered with a rejected event; "
            "fix it and send it under a new request_id"
        )
    if ids and not result.redriven:
        console.print("[red]error:[/] none of the given ids could be redriven")
        raise typer.Exit(1)

"""`jobrelay schedule`: the template's schedules, and one firing sent as Scheduler sends it."""

from __future__ import annotations

import json
from typing import Annotated

import boto3
import typer
from rich.table import Table

from jobrelay_cli.console import console, out
from jobrelay_cli.options import Endpoint, StackName
from jobrelay_cli.state import queue_url

schedule_app = typer.Typer(
    help="Schedules from template.yaml, fired as EventBridge Scheduler would."
)


@schedule_app.command("list")
def schedule_list() -> None:
    """The schedules template.yaml deploys."""
    # Imported here: checking schedules loads the request models, which other commands skip.
    from jobrelay_cli.schedules import template_schedules

    table = Table(title="schedules")
    for column in ("name", "expression", "timezone", "state", "provider"):
        table.add_column(column)
    for schedule in template_schedules().values():
        provider = json.loads(schedule.input).get("provider", "")
        table.add_row(
            schedule.name, schedule.expression, schedule.timezone, schedule.state, provider
        )
    out.print(table)


@schedule_app.command("fire")
def schedule_fire(
    name: Annotated[str, typer.Argument(help="The schedule's name.")],
    at: Annotated[str | None, typer.Option(help="Scheduled time, ISO 8601 (default: now).")] = None,
    endpoint: Endpoint = None,
    stack_name: StackName = "jobrelay",
) -> None:
    """Send one firing of a schedule to the requests queue, rendered as Scheduler renders it."""
    from jobrelay_cli.schedules import firing, parse_at, template_schedules

    schedules = template_schedules()
    if name not in schedules:
        console.print(f"[red]error:[/] no schedule {name!r}; known: {', '.join(sorted(schedules))}")
        raise typer.Exit(2)
    url, endpoint_url = queue_url(endpoint, stack_name)
    sqs = boto3.client("sqs", endpoint_url=endpoint_url)
    region = sqs.meta.region_name
    account = boto3.client("sts", endpoint_url=endpoint_url).get_caller_identity()["Account"]
    arn = (
        f"arn:aws:scheduler:{region}:{account}:schedule/{stack_name}-schedules/{stack_name}-{name}"
    )
    body = firing(schedules[name].input, schedule_arn=arn, at=parse_at(at))
    message_id = sqs.send_message(QueueUrl=url, MessageBody=body)["MessageId"]
    request_id = json.loads(body)["request_id"]
    console.print(f"fired {name}: request {request_id} (message {message_id})")
    out.print(request_id)

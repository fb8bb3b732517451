"""`jobrelay schedule`: the template's schedules, and one firing sent as Scheduler sends it."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from jobrelay_cli.console import console, out
from jobrelay_cli.errors import operation
from jobrelay_cli.options import Endpoint, Region, StackName
from jobrelay_cli.target import connect

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
@operation
def schedule_fire(
    name: Annotated[str, typer.Argument(help="The schedule's name.")],
    at: Annotated[str | None, typer.Option(help="Scheduled time, ISO 8601 (default: now).")] = None,
    endpoint: Endpoint = None,
    stack_name: StackName = None,
    region: Region = None,
) -> None:
    """Send one firing of a schedule to the requests queue, rendered as Scheduler renders it."""
    from jobrelay_cli.schedules import firing, parse_at, template_schedules

    schedules = template_schedules()
    if name not in schedules:
        console.print(f"[red]error:[/] no schedule {name!r}; known: {', '.join(sorted(schedules))}")
        raise typer.Exit(2)
    stack = connect(endpoint, stack_name, region)
    url, sqs = stack.output("JobRequestsQueueUrl"), stack.client("sqs")
    account = stack.client("sts").get_caller_identity()["Account"]
    # As Scheduler names it: the template's schedule group and schedule, by stack name.
    deployed = stack_name or "jobrelay"
    arn = (
        f"arn:aws:scheduler:{stack.region}:{account}:schedule/"
        f"{deployed}-schedules/{deployed}-{name}"
    )
    body = firing(schedules[name].input, schedule_arn=arn, at=parse_at(at))
    message_id = sqs.send_message(QueueUrl=url, MessageBody=body)["MessageId"]
    request_id = json.loads(body)["request_id"]
    console.print(f"fired {name}: request {request_id} (message {message_id})")
    out.print(request_id)

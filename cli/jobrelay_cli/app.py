"""The `jobrelay` command: run the whole system locally, send it requests, watch outcomes,
operate a deployed stack."""

from __future__ import annotations

from typing import Annotated

import typer

from jobrelay_cli import (
    connection_commands,
    dlq_commands,
    errors,
    request_commands,
    schedule_commands,
    stack_commands,
    steer_commands,
)

app = typer.Typer(
    help="jobrelay: create jobs on external job APIs from a queue, follow them, publish outcomes.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show a failed command's traceback.")
    ] = False,
) -> None:
    errors.debug = debug


app.command()(stack_commands.up)
app.command()(request_commands.submit)
app.command()(request_commands.events)
app.command()(steer_commands.cancel)
app.command()(steer_commands.status)
app.command()(steer_commands.jobs)
connection_commands.connections_app.command("add")(request_commands.connections_add)
app.add_typer(connection_commands.connections_app, name="connections")
app.command()(steer_commands.watch)
app.add_typer(schedule_commands.schedule_app, name="schedule")
app.add_typer(dlq_commands.dlq_app, name="dlq")
app.command()(stack_commands.run)
app.command()(stack_commands.demo)

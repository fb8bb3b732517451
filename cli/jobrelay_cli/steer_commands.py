"""`jobrelay cancel`, `status`, `jobs` and `watch`: steer a request after it is sent and see
where the requests stand."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

import typer
from jobrelay.aws import DynamoJobLedger
from jobrelay.models import CancelRequest
from pydantic import ValidationError
from rich.live import Live

from jobrelay_cli.console import out
from jobrelay_cli.errors import CommandError, operation
from jobrelay_cli.options import Endpoint, Region, StackName
from jobrelay_cli.target import Stack, connect
from jobrelay_cli.tracking import LimitsTableReader, RequestStatus, Tracking, Waiting
from jobrelay_cli.watch_view import Watch, requests_table, span, waiting_table

# Who a cancel from a local stack's CLI says asked (its credentials name nobody).
LOCAL_REQUESTER = "jobrelay cli"
# The ledger is only read here; the TTL is what its writers set.
LEDGER_TTL_SECONDS = 7 * 86_400

RequestIdArgument = Annotated[str, typer.Argument(help="The request's request_id.")]
Provider = Annotated[str | None, typer.Option(help="Only this provider's requests.")]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print JSON (one object per line).")]


def tracking_of(stack: Stack) -> Tracking:
    ledger = DynamoJobLedger(
        stack.output("IdempotencyTableName"), LEDGER_TTL_SECONDS, client=stack.client("dynamodb")
    )
    # A stack deployed before connection limits has no limits table: nothing ever waits.
    limits_table = stack.outputs.get("LimitsTableName")
    limits = (
        LimitsTableReader(limits_table, client=stack.client("dynamodb")) if limits_table else None
    )
    return Tracking(
        stack.client("stepfunctions"),
        stack.output("JobTrackerStateMachineArn"),
        ledger,
        stack.region,
        limits,
    )


@operation
def cancel(
    request_id: RequestIdArgument,
    reason: Annotated[str | None, typer.Option(help="Why (kept with the cancel).")] = None,
    endpoint: Endpoint = None,
    stack_name: StackName = None,
    region: Region = None,
) -> None:
    """Cancel a request wherever it is; it ends in one `cancelled` outcome (none if it ended)."""
    stack = connect(endpoint, stack_name, region)
    requested_by = (
        LOCAL_REQUESTER if stack.local else stack.client("sts").get_caller_identity()["Arn"]
    )
    message = {"action": "cancel", "request_id": request_id, "requested_by": requested_by}
    if reason is not None:
        message["reason"] = reason
    try:
        body = CancelRequest.model_validate(message).model_dump_json(exclude_none=True)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"])
        raise CommandError(f"cannot cancel: {field}: {error['msg']}", exit_code=2) from None
    sqs = stack.client("sqs")
    sent = sqs.send_message(QueueUrl=stack.output("JobRequestsQueueUrl"), MessageBody=body)
    out.print(f"cancel sent for {request_id} (message {sent['MessageId']})", markup=False)


@operation
def status(
    request_id: RequestIdArgument,
    as_json: JsonOutput = False,
    endpoint: Endpoint = None,
    stack_name: StackName = None,
    region: Region = None,
) -> None:
    """Where a request stands: its connection, job, latest poll, tracker execution, cancel and
    outcome; or what it waits for before its job is created."""
    reading = tracking_of(connect(endpoint, stack_name, region)).request(request_id)
    if reading is None:
        raise CommandError(f"no request {request_id} in this stack")
    if as_json:
        out.print(json.dumps(reading.as_json()), markup=False, highlight=False)
        return
    for label, value in _status_lines(reading, datetime.now(UTC)):
        out.print(f"{label:<11}{value}", markup=False, highlight=False)


@operation
def jobs(
    provider: Provider = None,
    as_json: JsonOutput = False,
    endpoint: Endpoint = None,
    stack_name: StackName = None,
    region: Region = None,
) -> None:
    """The requests in flight (each one's job, status and next poll), then those waiting for a
    slot of their connection, per connection, in line."""
    tracking = tracking_of(connect(endpoint, stack_name, region))
    readings = tracking.in_flight(provider)
    known = {r.connection: r.provider for r in readings if r.connection and r.provider}
    queues = tracking.queues(provider, known)
    if as_json:
        waiters = [waiter for queue in queues for waiter in queue.waiters]
        for reading in [*readings, *waiters]:
            out.print(json.dumps(reading.as_json()), markup=False, highlight=False)
        return
    now = datetime.now(UTC)
    if readings:
        out.print(requests_table(readings, [], now, title=f"{len(readings)} request(s) in flight"))
    else:
        out.print("no requests in flight", markup=False)
    if any(queue.queued for queue in queues):
        out.print(waiting_table(queues, now))
    elif queues:
        out.print(waiting_table(queues, now, title="no requests waiting for a slot"))


@operation
def watch(
    provider: Provider = None,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes.")] = 2.0,
    endpoint: Endpoint = None,
    stack_name: StackName = None,
    region: Region = None,
) -> None:
    """A live table of the requests in flight and those that just ended; Ctrl-C leaves it."""
    view = Watch(tracking_of(connect(endpoint, stack_name, region)), datetime.now(UTC), provider)
    try:
        view.refresh()
        with Live(view.table(datetime.now(UTC)), console=out, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                view.refresh()
                live.update(view.table(datetime.now(UTC)), refresh=True)
    except KeyboardInterrupt:
        return


def _status_lines(reading: RequestStatus, now: datetime) -> list[tuple[str, str]]:
    def when(value: datetime | None) -> str:
        if value is None:
            return "-"
        seconds = (value - now).total_seconds()
        relative = f"in {span(seconds)}" if seconds >= 0 else f"{span(-seconds)} ago"
        return f"{value.isoformat(timespec='seconds')} ({relative})"

    status = reading.status or "not tracked"
    if reading.raw_status:
        status += f" (raw {reading.raw_status})"
    execution = "-"
    if reading.execution_arn:
        execution = f"{reading.execution_arn} ({reading.execution_status})"
    cancel = "-"
    if reading.cancel is not None:
        asked = reading.cancel
        cancel = f"asked by {asked.requested_by} {when(asked.requested_at)}"
        cancel += f": {asked.reason}" if asked.reason else ""
    outcome = f"{reading.outcome.type} (id {reading.outcome.id})" if reading.outcome else "-"
    waiting = [] if reading.waiting is None else [("waiting", waiting_for(reading.waiting, when))]
    return [
        ("request", reading.request_id),
        ("provider", reading.provider or "-"),
        ("connection", reading.connection or "-"),
        ("remote job", reading.remote_job_id or "-"),
        ("status", status),
        *waiting,
        ("created", when(reading.created_at)),
        ("last poll", when(reading.last_poll_at)),
        ("next poll", when(reading.next_poll_at)),
        ("deadline", when(reading.deadline_at)),
        ("polls", "-" if reading.polls is None else str(reading.polls)),
        ("execution", execution),
        ("console", reading.console_url or "-"),
        ("cancel", cancel),
        ("outcome", outcome),
    ]


def waiting_for(waiting: Waiting, when: Callable[[datetime | None], str]) -> str:
    """What a waiting request waits for, in one sentence (`status`'s waiting line)."""
    name = waiting.connection
    slots = ""
    if waiting.cap is not None and waiting.in_flight is not None:
        slots = f" ({waiting.in_flight} of {waiting.cap} in flight)"
    if waiting.waiting_for == "rate":
        told = f"for the creation rate of connection {name}"
        if waiting.holds_slot:
            told += ", holding one of its slots"
    elif waiting.waiting_for != "slot":
        told = f"for {waiting.waiting_for} of connection {name}"
    elif waiting.holds_slot:
        told = f"for its job to be created: a slot of connection {name} came to it{slots}"
    else:
        told = f"for a slot of connection {name}{slots}"
        if waiting.position is not None:
            told += f", {ordinal(waiting.position)} in line"
            if waiting.queued is not None and waiting.queued > waiting.position:
                told += f" of {waiting.queued}"
        elif waiting.cap is not None:
            told += ", joining or leaving its line"
    if waiting.since is not None:
        told += f", since {when(waiting.since)}"
    return told


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th, …, 11th, 12th, 13th, 21st."""
    if 10 <= number % 100 <= 20:
        return f"{number}th"
    return f"{number}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(number % 10, 'th') }"

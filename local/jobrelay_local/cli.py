"""The `jobrelay` command: run the whole system locally, send it requests, watch outcomes."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import boto3
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from jobrelay_local.requests_io import RequestFileError, read_requests, request_id_of

app = typer.Typer(
    help="jobrelay: create jobs on external job APIs from a queue, follow them, publish outcomes.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True, soft_wrap=True)
# Bound to the real stdout: the local stack sends what the functions print (EMF metrics) to
# a file while it runs.
out = Console(file=sys.__stdout__, soft_wrap=True)

STATE_DIR = Path(os.environ.get("JOBRELAY_STATE_DIR", ".jobrelay"))
STATE_FILE = STATE_DIR / "stack.json"
EVENTS_FILE = STATE_DIR / "events.jsonl"

Files = Annotated[list[Path], typer.Argument(help="JSON files: a request object or an array.")]
JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print each outcome event as one JSON line.")
]


# Tracker generations the demo view follows (a generation is 500 poll rounds).
MAX_GENERATIONS_SHOWN = 100


def _load(files: list[Path]) -> list[dict[str, Any] | str]:
    try:
        requests = read_requests(files)
    except RequestFileError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    if not requests:
        console.print("[red]error:[/] no requests in the given files")
        raise typer.Exit(2)
    return requests


def _summary(event: dict[str, Any]) -> str:
    data = event.get("data", {})
    line = f"{data.get('request_id')}: {event.get('type')} ({data.get('provider')}"
    if data.get("remote_job_id"):
        line += f" job {data['remote_job_id']}"
    line += ")"
    error = data.get("error") or {}
    if error:
        line += f" - {error.get('code')}: {str(error.get('message'))[:160]}"
    return line


def _print_outcomes(events: list[dict[str, Any]], raw: dict[str, str], as_json: bool) -> None:
    for event in events:
        if as_json:
            out.print(
                raw.get(event["id"], json.dumps(event)),
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        else:
            out.print(_summary(event), markup=False, highlight=False, soft_wrap=True)


# ------------------------------------------------------------------ up / submit / events
@app.command()
def up(
    port: Annotated[int, typer.Option(help="Port of the local AWS endpoint.")] = 5000,
) -> None:
    """Start the local stack in the foreground (Ctrl-C stops it)."""
    from jobrelay_local.runtime import LocalStack

    STATE_DIR.mkdir(parents=True, exist_ok=True)
    EVENTS_FILE.write_text("", encoding="utf-8")
    local = LocalStack(
        server_port=port,
        log_file=STATE_DIR / "logs.jsonl",
        metrics_file=STATE_DIR / "metrics.jsonl",
    ).start()
    stack = local.require_stack()
    state = {
        "endpoint_url": local.endpoint_url,
        "region": stack.region,
        "outputs": stack.outputs,
        "providers": local.provider_urls,
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


def _running_state() -> dict[str, Any] | None:
    if not STATE_FILE.exists():
        return None
    return dict(json.loads(STATE_FILE.read_text(encoding="utf-8")))


def _stack_outputs(endpoint: str | None, stack_name: str) -> tuple[dict[str, str], str | None]:
    """The stack's outputs and endpoint: a running `jobrelay up`, else CloudFormation's."""
    state = _running_state()
    if endpoint is None and state is not None:
        return dict(state["outputs"]), state["endpoint_url"]
    cfn = boto3.client("cloudformation", endpoint_url=endpoint)
    stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    return outputs, endpoint


def _queue_url(endpoint: str | None, stack_name: str) -> tuple[str, str | None]:
    outputs, endpoint_url = _stack_outputs(endpoint, stack_name)
    return outputs["JobRequestsQueueUrl"], endpoint_url


def _read_events_file() -> tuple[list[dict[str, Any]], dict[str, str]]:
    if not EVENTS_FILE.exists():
        return [], {}
    events, raw = [], {}
    for line in EVENTS_FILE.read_text(encoding="utf-8").splitlines():
        if line.strip():
            event = json.loads(line)
            events.append(event)
            raw[event["id"]] = line
    return events, raw


@app.command()
def submit(
    files: Files,
    endpoint: Annotated[
        str | None, typer.Option(help="AWS endpoint (default: jobrelay up's, else AWS).")
    ] = None,
    stack_name: Annotated[
        str, typer.Option("--stack", help="Stack whose queue to use.")
    ] = "jobrelay",
    wait: Annotated[
        bool, typer.Option(help="Wait for each request's outcome (local stack).")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 300,
    as_json: JsonFlag = False,
) -> None:
    """Send requests to a running stack's JobRequests queue."""
    requests = _load(files)
    queue_url, endpoint_url = _queue_url(endpoint, stack_name)
    sqs = boto3.client("sqs", endpoint_url=endpoint_url)
    ids: list[str] = []
    for request in requests:
        body = request if isinstance(request, str) else json.dumps(request)
        message_id = sqs.send_message(QueueUrl=queue_url, MessageBody=body)["MessageId"]
        ids.append(request_id_of(request) or message_id)
        console.print(f"sent {ids[-1]} (message {message_id})")
    if not wait:
        return
    if _running_state() is None:
        console.print("[red]error:[/] --wait follows the events of a local stack (jobrelay up)")
        raise typer.Exit(2)
    deadline = time.monotonic() + timeout
    while True:
        events, raw = _read_events_file()
        done = list(
            {e["id"]: e for e in events if e.get("data", {}).get("request_id") in ids}.values()
        )
        open_ids = set(ids) - {e["data"]["request_id"] for e in done}
        if not open_ids or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    _print_outcomes(done, raw, as_json)
    if open_ids:
        console.print(f"[red]still open after {timeout:.0f}s:[/] {', '.join(sorted(open_ids))}")
        raise typer.Exit(1)


@app.command()
def events(
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Show the outcome events a local stack (jobrelay up) has published."""
    if _running_state() is None and not EVENTS_FILE.exists():
        console.print("[red]error:[/] no local stack: start one with `jobrelay up`")
        raise typer.Exit(2)
    shown = 0
    while True:
        published, raw = _read_events_file()
        _print_outcomes(published[shown:], raw, as_json)
        shown = len(published)
        if not follow:
            return
        try:
            time.sleep(0.5)
        except KeyboardInterrupt:
            return


# ------------------------------------------------------------------ schedules
schedule_app = typer.Typer(
    help="Schedules from template.yaml, fired as EventBridge Scheduler would."
)
app.add_typer(schedule_app, name="schedule")
Endpoint = Annotated[
    str | None, typer.Option(help="AWS endpoint (default: jobrelay up's, else AWS).")
]
StackName = Annotated[str, typer.Option("--stack", help="The jobrelay stack's name.")]


@schedule_app.command("list")
def schedule_list() -> None:
    """The schedules template.yaml deploys."""
    from jobrelay_local.schedules import template_schedules

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
    from jobrelay_local.schedules import firing, parse_at, template_schedules

    schedules = template_schedules()
    if name not in schedules:
        console.print(f"[red]error:[/] no schedule {name!r}; known: {', '.join(sorted(schedules))}")
        raise typer.Exit(2)
    queue_url, endpoint_url = _queue_url(endpoint, stack_name)
    sqs = boto3.client("sqs", endpoint_url=endpoint_url)
    region = sqs.meta.region_name
    account = boto3.client("sts", endpoint_url=endpoint_url).get_caller_identity()["Account"]
    arn = (
        f"arn:aws:scheduler:{region}:{account}:schedule/{stack_name}-schedules/{stack_name}-{name}"
    )
    body = firing(schedules[name].input, schedule_arn=arn, at=parse_at(at))
    message_id = sqs.send_message(QueueUrl=queue_url, MessageBody=body)["MessageId"]
    request_id = json.loads(body)["request_id"]
    console.print(f"fired {name}: request {request_id} (message {message_id})")
    out.print(request_id)


# ------------------------------------------------------------------ the DLQ
dlq_app = typer.Typer(help="Dead requests: list them with their reason, send them back.")
app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def dlq_list(
    endpoint: Endpoint = None, stack_name: StackName = "jobrelay", as_json: JsonFlag = False
) -> None:
    """Each request in the DLQ with its reason."""
    from jobrelay_local.dlq import list_dead_letters

    outputs, endpoint_url = _stack_outputs(endpoint, stack_name)
    letters = list_dead_letters(
        boto3.client("sqs", endpoint_url=endpoint_url), outputs["JobRequestsDLQUrl"]
    )
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
def dlq_redrive(
    ids: Annotated[
        list[str] | None,
        typer.Option("--id", help="Message or request id (repeatable); default: all."),
    ] = None,
    endpoint: Endpoint = None,
    stack_name: StackName = "jobrelay",
) -> None:
    """Send dead requests back to the requests queue."""
    from jobrelay_local.dlq import redrive

    outputs, endpoint_url = _stack_outputs(endpoint, stack_name)
    result = redrive(
        boto3.client("sqs", endpoint_url=endpoint_url),
        outputs["JobRequestsDLQUrl"],
        outputs["JobRequestsQueueUrl"],
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


# ------------------------------------------------------------------ run / demo
def _run(
    requests: list[dict[str, Any] | str],
    *,
    timeout: float,
    as_json: bool,
    targets: dict[str, dict[str, dict[str, Any]]] | None = None,
    live: bool = False,
) -> tuple[dict[str, dict[str, Any]], set[str]]:
    from jobrelay_local.runtime import LocalStack

    console.print("starting the local stack…")
    with LocalStack(
        log_file=STATE_DIR / "logs.jsonl", metrics_file=STATE_DIR / "metrics.jsonl"
    ) as local:
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
                _progress_table(local, ids, {}), console=console, refresh_per_second=4
            ) as view:
                outcomes, open_ids = local.wait_for_outcomes(
                    ids,
                    timeout=timeout,
                    on_tick=lambda: view.update(_progress_table(local, ids, _outcomes(local, ids))),
                )
                view.update(_progress_table(local, ids, outcomes))
        else:
            outcomes, open_ids = local.wait_for_outcomes(ids, timeout=timeout)
        raw = {}
        if local.sink is not None:
            for line in local.sink.raw:
                raw[json.loads(line)["id"]] = line
        unique = list(dict.fromkeys(ids))  # a request sent twice still has one outcome
        _print_outcomes([outcomes[i] for i in unique if i in outcomes], raw, as_json)
    return outcomes, open_ids


def _outcomes(local: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    return {e["data"]["request_id"]: e for e in local.events() if e["data"]["request_id"] in ids}


def _tracker_view(sfn: Any, state_machine_arn: str, request_id: str) -> tuple[str, str]:
    """What the tracker last saw of a job: (status, progress), following the execution a
    long job continued as (`poll.continue_as`) generation by generation."""
    from jobrelay.models import execution_name

    prefix, _, machine = state_machine_arn.partition(":stateMachine:")
    name = execution_name(request_id)
    seen = "QUEUED", ""
    for _ in range(MAX_GENERATIONS_SHOWN):
        arn = f"{prefix}:execution:{machine}:{name}"
        try:
            history = sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=30)
        except Exception:
            return seen if name != execution_name(request_id) else ("waiting", "")
        poll: dict[str, Any] | None = None
        for event in history["events"]:
            output = (event.get("stateExitedEventDetails") or {}).get("output")
            if output:
                poll = json.loads(output).get("poll") or {}
                break
        if poll is None:
            return seen
        progress = poll.get("progress")
        seen = str(poll.get("status", "…")), f"{progress:.0%}" if progress is not None else ""
        if not poll.get("continue_as"):
            return seen
        name = str(poll["continue_as"])
    return seen


def _progress_table(local: Any, ids: list[str], outcomes: dict[str, dict[str, Any]]) -> Table:
    sfn = boto3.client("stepfunctions")
    stack = local.require_stack()
    table = Table(title="jobrelay demo")
    for column in ("request", "provider", "status", "progress", "outcome"):
        table.add_column(column)
    for request_id in ids:
        event = outcomes.get(request_id)
        if event is not None:
            data = event["data"]
            progress = data.get("details", {}).get("progress")
            table.add_row(
                request_id,
                data["provider"],
                str(data["status"]),
                f"{progress:.0%}" if isinstance(progress, float) else "",
                event["type"].rsplit(".", 1)[-1],
            )
        else:
            status, progress = _tracker_view(sfn, stack.state_machine_arn, request_id)
            table.add_row(request_id, "", status, progress, "…")
    return table


@app.command()
def run(
    files: Files,
    as_json: JsonFlag = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every outcome.")] = 300,
) -> None:
    """Start an ephemeral local stack, submit the requests, print each outcome, stop."""
    requests = _load(files)
    _, open_ids = _run(requests, timeout=timeout, as_json=as_json)
    if open_ids:
        console.print(f"[red]no outcome within {timeout:.0f}s:[/] {', '.join(sorted(open_ids))}")
        raise typer.Exit(1)


@app.command()
def demo(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every outcome.")] = 150,
) -> None:
    """Run the sample requests of all three providers with a live view of each job."""
    from jobrelay_local.demo import DEMO_REQUESTS_DIR, DEMO_TARGETS, expected_type

    started = time.monotonic()
    files = sorted(DEMO_REQUESTS_DIR.glob("*.json"))
    requests = _load(files)
    outcomes, open_ids = _run(
        requests, timeout=timeout, as_json=False, targets=DEMO_TARGETS, live=True
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


def main() -> None:  # pragma: no cover - console script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())

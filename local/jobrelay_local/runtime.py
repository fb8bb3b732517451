"""The local stack: the whole of jobrelay on one machine, no AWS account, started and
stopped as one (`LocalStack`)."""

from __future__ import annotations

import io
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack, redirect_stdout
from pathlib import Path
from typing import Any, Self

import boto3
from jobrelay.registry import PROVIDER_NAMES, REGISTRY

from jobrelay_local.atomic_writes import atomic_dynamodb_writes
from jobrelay_local.config import (
    LOCAL_CREATE_JOB_CONCURRENCY,
    LOCAL_VISIBILITY_TIMEOUT,
    MOTO_CONFIG,
    ensure_fake_aws_environment,
    function_environment_from,
    parameters_from,
    per_provider_from,
)
from jobrelay_local.connections_file import (
    LocalConnection,
    PlacedConnection,
    add_connections,
    is_loopback,
)
from jobrelay_local.deploy import deploy
from jobrelay_local.deployment import DeployedStack
from jobrelay_local.event_sink import EventSink
from jobrelay_local.event_source import SqsEventSource
from jobrelay_local.execution_events import ExecutionEvents
from jobrelay_local.execution_stop import executions_end_with_the_stack
from jobrelay_local.handlers import apply_environment, load_handler
from jobrelay_local.lambdas import Handler, route_lambda_invokes
from jobrelay_local.log_files import function_logs_to, logs_to_files, stdout_to
from jobrelay_local.provider_secrets import create_provider_secrets, placeholder_key


class LocalStack:
    """Start, use and stop the whole system in this process.

    AWS runs in-process in moto (or as a moto server other processes can call); the resources
    come from `template.yaml`; the real state machine definition is executed by moto's Step
    Functions interpreter; Lambda invokes reach the real handlers in this process; CreateJob
    is fed from the queue by `SqsEventSource`, which behaves like Lambda's event source
    mapping; providers are the loopback emulators unless `JOBRELAY_<NAME>_BASE_URL` points
    elsewhere.

    `LocalStack().start()` needs nothing but this project: it starts the emulators, moto, the
    template's resources, the handlers and the queue poller. Use `with LocalStack() as stack:`.

    `connections` (from a connections file) are stored where the deployed stack keeps them,
    pointed at the emulators (`connection_notes` says which were); `add_connections` adds
    more while the stack runs.
    """

    def __init__(
        self,
        *,
        parameters: Mapping[str, str] | None = None,
        provider_urls: Mapping[str, str] | None = None,
        api_keys: Mapping[str, str] | None = None,
        server_port: int | None = None,
        aws_endpoint: str | None = None,
        environ: Mapping[str, str] | None = None,
        visibility_timeout: int | None = None,
        feed_queue: bool = True,
        log_file: Path | None = None,
        metrics_file: Path | None = None,
        log_dir: Path | None = None,
        connections: Sequence[LocalConnection] = (),
    ) -> None:
        env = os.environ if environ is None else environ
        self.parameters = parameters_from(env)
        self.parameters.update(parameters or {})
        self.provider_urls = per_provider_from(env, "BASE_URL")
        self.provider_urls.update(provider_urls or {})
        self.api_keys = per_provider_from(env, "API_KEY")
        self.api_keys.update(api_keys or {})
        self.server_port = server_port
        # AWS served elsewhere (a moto server in a process of its own, as the CreateJob bench
        # uses): nothing of moto runs here, so Step Functions' Lambda tasks there do not reach
        # the handlers in this process, and DynamoDB writes are as atomic as that server makes
        # them.
        self.aws_endpoint = aws_endpoint
        self.feed_queue = feed_queue
        self.log_file = log_file
        self.metrics_file = metrics_file
        # moto's, its server's and the emulators' own logs go to files here (the CLI's
        # terminal shows jobs and outcomes only); None leaves logging as the caller set it.
        self.log_dir = log_dir
        self.visibility_timeout = visibility_timeout or int(
            env.get("JOBRELAY_VISIBILITY_TIMEOUT", LOCAL_VISIBILITY_TIMEOUT)
        )
        self.function_environment = function_environment_from(env)
        self.connections = list(connections)
        self.placed_connections: dict[str, PlacedConnection] = {}
        self.connection_notes: list[str] = []
        self.emulators: dict[str, Any] = {}
        self._exit = ExitStack()
        self.stack: DeployedStack | None = None
        self.source: SqsEventSource | None = None
        self.sink: EventSink | None = None
        self.execution_events: ExecutionEvents | None = None
        self.handlers: dict[str, Handler] = {}
        self.endpoint_url: str | None = None

    # -- lifecycle
    def start(self) -> Self:
        ensure_fake_aws_environment()
        try:
            if self.log_dir is not None:
                self._exit.enter_context(logs_to_files(self.log_dir))
            self._start_aws()
            self._start_emulators()
            self._deploy()
            self.add_connections(self.connections)
            self._start_runtime()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_aws(self) -> None:
        if self.aws_endpoint is not None:
            self.endpoint_url = self.aws_endpoint
            os.environ["AWS_ENDPOINT_URL"] = self.aws_endpoint
            return
        self._exit.enter_context(atomic_dynamodb_writes())
        if self.server_port is None:
            from moto import mock_aws

            mock = mock_aws(config=MOTO_CONFIG)
            mock.start()
            self._exit.callback(mock.stop)
            return
        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        default_user_config.update(MOTO_CONFIG)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.server_port)
        # moto announces its server with print(): into moto's log, not the CLI's stdout.
        announcement = io.StringIO()
        with redirect_stdout(announcement):
            server.start()
        if announcement.getvalue().strip():
            logging.getLogger("moto").info("%s", announcement.getvalue().strip())
        self._exit.callback(server.stop)
        self.endpoint_url = f"http://127.0.0.1:{self.server_port}"
        os.environ["AWS_ENDPOINT_URL"] = self.endpoint_url
        # moto's Step Functions calls Lambda back at localhost:$MOTO_PORT (default 5000).
        os.environ["MOTO_PORT"] = str(self.server_port)

    def _start_emulators(self) -> None:
        from jobrelay_local.emulators import start_all

        missing = [name for name in PROVIDER_NAMES if name not in self.provider_urls]
        if not missing:
            return
        keys = {name: self.api_keys.get(name, placeholder_key(name)) for name in PROVIDER_NAMES}
        for name, keys_key in keys.items():
            self.api_keys.setdefault(name, keys_key)
        servers = start_all(api_keys=keys)
        for name, server in servers.items():
            self._exit.callback(server.stop)
            if name in missing:
                self.emulators[name] = server
                self.provider_urls[name] = server.url

    def _deploy(self) -> None:
        secrets = create_provider_secrets(self.api_keys)
        urls = {REGISTRY[name].base_url_parameter: url for name, url in self.provider_urls.items()}
        self.stack = deploy(parameters={**self.parameters, **secrets, **urls})
        boto3.client("sqs").set_queue_attributes(
            QueueUrl=self.stack.queue_url,
            Attributes={"VisibilityTimeout": str(self.visibility_timeout)},
        )

    def _start_runtime(self) -> None:
        from jobrelay import wiring

        stack = self.require_stack()
        apply_environment(stack)
        self._set_environment(self.function_environment)
        wiring.reset()
        if self.log_file is not None:
            self._exit.enter_context(function_logs_to(self.log_file))
        if self.metrics_file is not None:
            self._exit.enter_context(stdout_to(self.metrics_file))
        self.handlers = {
            spec.function_name: load_handler(spec) for spec in stack.functions.values()
        }
        self._exit.enter_context(route_lambda_invokes(self.handlers))
        if self.aws_endpoint is None:
            # At stop, after the queue's poller (no CreateJob starts one any more) and before
            # the handlers' routes, moto and the emulators go: every execution still running
            # is stopped and its thread waited for, so none acts after the stack stopped.
            self._exit.enter_context(executions_end_with_the_stack(stack.state_machines.values()))
        self.sink = EventSink(stack.topic_arn)
        create = stack.function("CreateJobFunction")
        trigger = create.sqs_trigger
        self.source = SqsEventSource(
            queue_url=stack.queue_url,
            queue_arn=trigger.queue_arn if trigger else "",
            handler=self.handlers[create.function_name],
            spec=create,
            batch_size=trigger.batch_size if trigger else 10,
            batching_window_seconds=trigger.maximum_batching_window_seconds if trigger else 0,
            report_batch_item_failures=trigger.report_batch_item_failures if trigger else True,
            maximum_concurrency=min(
                (trigger.maximum_concurrency if trigger else None) or LOCAL_CREATE_JOB_CONCURRENCY,
                LOCAL_CREATE_JOB_CONCURRENCY,
            ),
        )
        if self.feed_queue:
            self.source.start()
            self._exit.callback(self.source.stop)
        if self.aws_endpoint is None:
            # Step Functions' status-change events to the functions whose rules match them;
            # with AWS served elsewhere no execution ends in this process.
            self.execution_events = ExecutionEvents(stack.functions.values(), self.handlers)
            self.execution_events.start()
            self._exit.callback(self.execution_events.stop)

    def _set_environment(self, variables: Mapping[str, str]) -> None:
        """Set variables for the in-process functions, put back as they were at stop."""
        for name, value in variables.items():
            previous = os.environ.get(name)
            os.environ[name] = value
            if previous is None:
                self._exit.callback(os.environ.pop, name, None)
            else:
                self._exit.callback(os.environ.__setitem__, name, previous)

    def stop(self) -> None:
        """Stop every part, in reverse order of starting (safe to call twice)."""
        self._exit.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- use
    def require_stack(self) -> DeployedStack:
        if self.stack is None:
            raise RuntimeError("the local stack is not started")
        return self.stack

    @property
    def connections_prefix(self) -> str:
        """Where the functions read connections: `<CONNECTIONS_PREFIX><name>`."""
        return self.require_stack().function("CreateJobFunction").environment["CONNECTIONS_PREFIX"]

    def emulator_url(self, provider: str) -> str | None:
        """Where a connection of `provider` is pointed locally: the stack's own emulator, or
        the provider's loopback base URL; None when the provider is not on loopback."""
        if provider in self.emulators:
            return str(self.emulators[provider].url)
        url = self.provider_urls.get(provider)
        return url if url is not None and is_loopback(url) else None

    def add_connections(self, connections: Sequence[LocalConnection]) -> list[PlacedConnection]:
        """Store connections as secrets where the functions read them (the stack may be
        running: a new one is used within SECRET_MAX_AGE_SECONDS, 2 s locally).

        Each is pointed at loopback and checked before any is stored
        (`ConnectionsFileError`); the stack's own emulators accept each one's credential as
        a tenant of its own. Emulators started elsewhere are the caller's to script.
        """
        placed = add_connections(
            connections,
            secretsmanager=boto3.client("secretsmanager"),
            prefix=self.connections_prefix,
            emulator_url=self.emulator_url,
            own_emulators=self.emulators,
        )
        for connection in placed:
            self.placed_connections[connection.name] = connection
            if connection.note:
                self.connection_notes.append(connection.note)
        return placed

    def submit(self, request: Mapping[str, Any] | str, **attributes: str) -> str:
        """Send one request to the JobRequests queue; returns the SQS message id."""
        body = request if isinstance(request, str) else json.dumps(request)
        answer = boto3.client("sqs").send_message(
            QueueUrl=self.require_stack().queue_url, MessageBody=body
        )
        return answer["MessageId"]

    def events(self) -> list[dict[str, Any]]:
        """Every outcome event published so far."""
        if self.sink is None:
            return []
        self.sink.drain()
        return list(self.sink.events)

    def wait_for_outcomes(
        self,
        request_ids: Iterable[str],
        *,
        timeout: float = 120.0,
        on_tick: Callable[[], None] | None = None,
    ) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """Wait until each request id has an outcome event; returns (outcomes, still open)."""
        wanted = set(request_ids)
        deadline = time.monotonic() + timeout
        outcomes: dict[str, dict[str, Any]] = {}
        while True:
            for event in self.events():
                request_id = event.get("data", {}).get("request_id")
                if request_id in wanted:
                    outcomes.setdefault(request_id, event)
            open_ids = wanted - outcomes.keys()
            if not open_ids or time.monotonic() >= deadline:
                return outcomes, open_ids
            if on_tick is not None:
                on_tick()
            time.sleep(0.2)

    def dead_letters(self) -> list[dict[str, Any]]:
        """The DLQ's messages (received with a zero visibility timeout, left in place)."""
        sqs = boto3.client("sqs")
        seen: dict[str, dict[str, Any]] = {}
        for _ in range(5):
            answer = sqs.receive_message(
                QueueUrl=self.require_stack().dlq_url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                AttributeNames=["All"],
                VisibilityTimeout=0,
            )
            for message in answer.get("Messages", []):
                seen.setdefault(message["MessageId"], dict(message))
            if not answer.get("Messages"):
                break
        return list(seen.values())

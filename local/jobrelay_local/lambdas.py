"""Lambda, emulated in this process: the context object, the error payload of an unhandled
exception, and every invoke (from boto3 or moto's Step Functions) routed to a Python handler."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from jobrelay_local.deployment import function_name

Handler = Callable[[Any, Any], Any]
"""A Lambda handler: `(event, context) -> JSON-serializable result`."""


@dataclass
class FakeLambdaContext:
    """The parts of Lambda's context object that handlers and Powertools read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: int
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "local"
    identity: Any = None
    client_context: Any = None
    tenant_id: str | None = None
    _deadline: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def lambda_error_payload(exc: BaseException) -> dict[str, Any]:
    """The payload the Python Lambda runtime returns for an unhandled exception."""
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": "",
        "stackTrace": traceback.format_list(
            [
                frame
                for frame in traceback.extract_tb(exc.__traceback__)
                if frame.filename != __file__
            ]
        ),
    }


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    wanted = name.lower()
    items = headers.items() if hasattr(headers, "items") else headers
    for key, value in items:
        if str(key).lower() == wanted:
            return str(value)
    return None


def _call_handler(handler: Handler, body: Any, context: FakeLambdaContext) -> tuple[bytes, bool]:
    """Run one invocation; return (response payload, whether it is a function error)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    event = json.loads(body) if body else {}
    try:
        result = handler(event, context)
    except Exception as exc:
        payload = lambda_error_payload(exc)
        payload["requestId"] = context.aws_request_id
        return json.dumps(payload).encode("utf-8"), True
    try:
        return json.dumps(result).encode("utf-8"), False
    except (TypeError, ValueError) as exc:
        marshal_error = {
            "errorMessage": f"Unable to marshal response: {exc}",
            "errorType": "Runtime.MarshalError",
            "requestId": context.aws_request_id,
            "stackTrace": [],
        }
        return json.dumps(marshal_error).encode("utf-8"), True


# How a function error reaches Step Functions (moto 5.2.5, read from its source):
# `LambdaResponse.invoke` (moto/awslambda/responses.py) returns our `response_headers` as the
# HTTP headers of the Invoke answer, so botocore parses `X-Amz-Function-Error` into
# `FunctionError`. moto's interpreter (stepfunctions/parser/.../lambda_eval_utils.py) raises
# `LambdaFunctionErrorException` when `FunctionError` is set, and `_from_error` of
# `StateTaskServiceLambda` (`arn:aws:states:::lambda:invoke`) and of `StateTaskLambda` (a
# function ARN as Resource) turns it into `CustomErrorName(payload["errorType"])`, with the
# payload JSON as the cause. So the error name that Retry/Catch match is the `errorType`,
# here the exception's class name (`ProviderUnavailable`), exactly as on AWS; the header's
# value ("Unhandled" as the Python runtime sends it) is only checked for presence.
@contextlib.contextmanager
def route_lambda_invokes(handlers_by_function_name: Mapping[str, Handler]) -> Iterator[None]:
    """Make Lambda invokes of these functions (name or ARN keys) run the handlers in-process.

    Patches moto's `LambdaSimpleBackend.invoke` (used with `"lambda": {"use_docker": False}`)
    for the duration of the block, so direct `lambda.invoke` calls and Step Functions
    `lambda:invoke` tasks alike reach the Python handler. `Event` invokes run in a thread.
    A function without a handler fails like a missing handler does on AWS.
    """
    from moto.awslambda_simple.models import LambdaSimpleBackend

    handlers = {function_name(key): value for key, value in handlers_by_function_name.items()}

    def invoke(
        backend: LambdaSimpleBackend,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: Any,
    ) -> bytes:
        fn = backend.get_function(function_name, qualifier)
        context = FakeLambdaContext(
            function_name=fn.function_name,
            invoked_function_arn=fn.function_arn,
            memory_limit_in_mb=int(fn.memory_size),
            timeout_seconds=int(fn.timeout),
        )
        handler = handlers.get(fn.function_name)
        if handler is None:
            missing = {
                "errorMessage": f"no in-process handler is routed for {fn.function_name}",
                "errorType": "Runtime.HandlerNotFound",
                "requestId": context.aws_request_id,
                "stackTrace": [],
            }
            response_headers["X-Amz-Function-Error"] = "Unhandled"
            return json.dumps(missing).encode("utf-8")
        response_headers["X-Amz-Executed-Version"] = "$LATEST"
        invocation_type = _header(headers, "X-Amz-Invocation-Type") or "RequestResponse"
        if invocation_type == "DryRun":
            return b""
        if invocation_type == "Event":
            threading.Thread(
                target=_call_handler,
                args=(handler, body, context),
                name=f"lambda-event-{fn.function_name}",
                daemon=True,
            ).start()
            return b""
        payload, failed = _call_handler(handler, body, context)
        if failed:
            response_headers["X-Amz-Function-Error"] = "Unhandled"
        return payload

    with mock.patch.object(LambdaSimpleBackend, "invoke", invoke):
        yield

"""The stack a command talks to: a running `jobrelay up`, reached with its own endpoint, region
and credentials (none of the machine's), or a deployed stack, reached with the usual AWS
credential chain and read from CloudFormation's outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

from jobrelay_cli.errors import CommandError
from jobrelay_cli.state import running_state

# moto accepts any credentials; these name what they are in a request log.
LOCAL_ACCESS_KEY = "jobrelay-local"
NO_LOCAL_STACK = (
    "no local stack is running: start `jobrelay up`, or pass `--stack NAME` for a deployed one"
)


@dataclass(frozen=True)
class Stack:
    """A jobrelay stack's outputs and a session that reaches it."""

    name: str
    outputs: dict[str, str]
    session: boto3.Session
    endpoint_url: str | None
    local: bool

    @property
    def region(self) -> str:
        return str(self.session.region_name)

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint_url)  # type: ignore[call-overload]

    def output(self, key: str) -> str:
        try:
            return self.outputs[key]
        except KeyError:
            raise CommandError(
                f"stack {self.name!r} has no output {key}: is it a jobrelay stack?"
            ) from None


def connect(endpoint: str | None, stack_name: str | None, region: str | None) -> Stack:
    """The local stack unless a deployed one is named (`--stack`) or another endpoint given."""
    state = running_state()
    if stack_name is None and (endpoint is None or (state and endpoint == state["endpoint_url"])):
        if state is None:
            raise CommandError(NO_LOCAL_STACK, exit_code=2)
        session = boto3.Session(
            aws_access_key_id=LOCAL_ACCESS_KEY,
            aws_secret_access_key=LOCAL_ACCESS_KEY,
            region_name=state["region"],
        )
        return Stack("local", dict(state["outputs"]), session, state["endpoint_url"], local=True)
    return _deployed(stack_name or "jobrelay", endpoint, region)


def _deployed(name: str, endpoint: str | None, region: str | None) -> Stack:
    session = boto3.Session(region_name=region)
    if session.region_name is None:
        raise CommandError(
            f"no AWS region for stack {name!r}: pass --region or set AWS_REGION", exit_code=2
        )
    if session.get_credentials() is None:
        raise CommandError(
            f"no AWS credentials found for region {session.region_name}: configure them "
            "(aws configure, AWS_PROFILE), or start `jobrelay up` for a local stack"
        )
    cloudformation = session.client("cloudformation", endpoint_url=endpoint)
    try:
        described = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ValidationError":
            raise CommandError(
                f"no stack {name!r} in {session.region_name}: deploy it (sam deploy) or pass "
                "--stack and --region of one that is"
            ) from exc
        raise
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    return Stack(name, outputs, session, endpoint, local=False)

"""What deploying the template into moto gives back: the stack, its functions with their SQS
triggers and EventBridge rules, with the names and ARNs moto chose."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def function_name(name_or_arn: str) -> str:
    """The function's name, from its name or its ARN (a qualifier dropped)."""
    # arn:aws:lambda:region:account:function:name[:qualifier]
    if name_or_arn.startswith("arn:"):
        return name_or_arn.split(":")[6]
    return name_or_arn


@dataclass(frozen=True)
class SqsTrigger:
    """An SQS event source mapping of a function, as the template declares it."""

    uuid: str
    queue_arn: str
    queue_url: str
    batch_size: int
    maximum_batching_window_seconds: int
    report_batch_item_failures: bool
    enabled: bool
    maximum_concurrency: int | None = None
    """`ScalingConfig.MaximumConcurrency`: the most invocations the mapping runs at once
    (None: as many as the function's concurrency allows)."""


@dataclass(frozen=True)
class EventRule:
    """An EventBridge rule that targets a function, as deployed (its pattern resolved)."""

    name: str
    arn: str
    pattern: dict[str, Any]
    enabled: bool
    # The target's RetryPolicy, for failures to hand the event to Lambda (not for function
    # errors: Lambda retries those, see AsyncInvokeConfig). EventBridge's defaults are 185
    # attempts over 24 hours (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-retry-policy.html).
    maximum_retry_attempts: int = 185
    maximum_event_age_seconds: int = 86400
    dead_letter_arn: str | None = None


@dataclass(frozen=True)
class AsyncInvokeConfig:
    """How Lambda retries a function's asynchronous invokes (an EventBridge target's) on a
    function error, and where an event goes when the retries are spent.

    Defaults as Lambda's: two retries, events kept six hours
    (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html).
    """

    maximum_retry_attempts: int = 2
    maximum_event_age_seconds: int = 21600
    on_failure_arn: str | None = None
    """`DestinationConfig.OnFailure` of the function's EventInvokeConfig."""
    dead_letter_arn: str | None = None
    """The function's own `DeadLetterConfig` (the event itself, with the error)."""


@dataclass(frozen=True)
class FunctionSpec:
    """One Lambda function of the stack, with what running it in-process needs."""

    logical_id: str
    function_name: str
    function_arn: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    timeout: int
    memory_size: int
    sqs_trigger: SqsTrigger | None = None
    event_rules: tuple[EventRule, ...] = ()
    async_invoke: AsyncInvokeConfig = field(default_factory=AsyncInvokeConfig)


@dataclass(frozen=True)
class DeployedStack:
    """A stack created in moto from the template."""

    stack_name: str
    stack_id: str
    region: str
    account_id: str
    parameters: dict[str, str]
    outputs: dict[str, str]
    resources: dict[str, str]
    resource_types: dict[str, str]
    functions: dict[str, FunctionSpec]
    state_machines: dict[str, str]
    template: dict[str, Any] = field(repr=False)

    @property
    def queue_url(self) -> str:
        return self.outputs["JobRequestsQueueUrl"]

    @property
    def dlq_url(self) -> str:
        return self.outputs["JobRequestsDLQUrl"]

    @property
    def topic_arn(self) -> str:
        return self.outputs["JobEventsTopicArn"]

    @property
    def state_machine_arn(self) -> str:
        return self.outputs["JobTrackerStateMachineArn"]

    @property
    def table_name(self) -> str:
        return self.outputs["IdempotencyTableName"]

    def function(self, logical_id: str) -> FunctionSpec:
        """The function with this logical id (e.g. `CreateJobFunction`)."""
        return self.functions[logical_id]

    def function_by_name(self, name_or_arn: str) -> FunctionSpec:
        """The function with this physical name or ARN."""
        name = function_name(name_or_arn)
        for spec in self.functions.values():
            if spec.function_name == name:
                return spec
        raise KeyError(name_or_arn)

"""Typed errors raised by the layer; the handlers decide what each one means at the edge.

The class names are part of the state machine's contract: a Lambda task that raises one of
these fails with the class name as its Step Functions error name (see `statemachine/`).
"""

from __future__ import annotations

from typing import NamedTuple


class FieldProblem(NamedTuple):
    """One field-level reason a request or provider call was refused. (A NamedTuple, not a
    frozen dataclass: one fewer class whose methods every cold start compiles.)"""

    field: str
    message: str
    kind: str = "invalid"

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "kind": self.kind}


class JobRelayError(Exception):
    """Base of every error the layer raises on purpose."""

    code: str = "JOBRELAY_ERROR"
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RequestInvalid(JobRelayError):
    """The message is not a valid `JobRequest`: permanent, answered with a rejected event."""

    code = "REQUEST_INVALID"

    def __init__(self, message: str, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class ProviderRejected(JobRelayError):
    """The provider refused the request (400/403/404/422, invalid workflow): permanent."""

    code = "PROVIDER_REJECTED"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        problems: list[FieldProblem] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.problems = problems or []


class ProviderUnavailable(JobRelayError):
    """A transient provider failure (timeout, 429, 5xx, pipeline busy): try again later.

    `ambiguous` marks a create call that may have reached the provider (a timeout after the
    request was sent, or a 5xx), so the job may exist although we saw no answer.
    """

    code = "PROVIDER_UNAVAILABLE"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after
        self.ambiguous = ambiguous


class ProviderProtocolError(JobRelayError):
    """The provider answered something we cannot read (malformed JSON, missing fields).

    Retryable: a proxy or a deploy at the provider is the usual cause, and the tracker's
    deadline bounds how long we keep trying.
    """

    code = "PROVIDER_PROTOCOL_ERROR"
    retryable = True


class JobNotFound(JobRelayError):
    """The provider no longer knows the job we are tracking (404 on a GET): permanent."""

    code = "JOB_NOT_FOUND"


class ConfigurationError(JobRelayError):
    """Settings or secrets are missing or wrong: permanent until an operator fixes them."""

    code = "CONFIGURATION_ERROR"


class JobClaimed(JobRelayError):
    """A remote job is already another request's (the job ledger's claim on it): never
    adopted by a second request. Retryable where it interrupts a create (SQS retries it)."""

    code = "JOB_CLAIMED"
    retryable = True

    def __init__(self, message: str, owner: str | None = None) -> None:
        super().__init__(message)
        self.owner = owner


class RequestWaiting(JobRelayError):
    """The request waits for its connection (a free slot, or the next minute's creates): it
    is kept in the limits table or sent back to the queue with a delay, so its message is
    done with for now. Not a failure: CreateJob reports the record handled."""

    code = "REQUEST_WAITING"

    def __init__(self, message: str, *, connection: str, waiting_for: str) -> None:
        super().__init__(message)
        self.connection = connection
        self.waiting_for = waiting_for


class RequestInProgress(JobRelayError):
    """Another delivery of the same request holds its lease in the job ledger (it is being
    created right now): this record is retried by SQS, never created a second time. The
    lease lasts the holder's invocation at most, so a crashed holder delays the retry only."""

    code = "REQUEST_IN_PROGRESS"
    retryable = True


class TrackerThrottled(JobRelayError):
    """Step Functions refused to start the request's tracker for now, through every SDK
    retry (`ThrottlingException`, or `ExecutionLimitExceeded`: the account's open executions
    are at their quota). The job is recorded: CreateJob sends the message back with a delay
    rather than spend the record's receive count on it, so throttling never sends it to
    the DLQ; its deadline still counts."""

    code = "TRACKER_THROTTLED"
    retryable = True

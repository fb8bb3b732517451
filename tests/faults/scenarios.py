"""The fault scenarios: what fails, where, and the outcome each request must end in.

Every scenario has its own pipeline/workflow (and, for deepset, its own workspace), so its
faults are scoped by URL path and the scenarios run side by side: one request each, delivered
by CreateJob batches driven here (as Lambda's SQS poller would), tracked by the real state
machine, judged afterwards by `invariant.check_invariant`. Faults on calls whose path holds
only the remote job id (Matatika's get, stop and logs) are installed the moment the job
exists, before its first poll is due.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from jobrelay.registry import PROVIDER_NAMES

Call = Literal["create", "get", "cancel", "logs", "aws"]
SUCCEEDED = "jobrelay.job.succeeded"
FAILED = "jobrelay.job.failed"
TIMED_OUT = "jobrelay.job.timed_out"
CANCELLED = "jobrelay.job.cancelled"
REJECTED = "jobrelay.job.rejected"
# The suite deploys the template with HttpTimeoutSeconds=2 (see conftest): a read timeout
# needs an answer later than that.
HTTP_TIMEOUT_SECONDS = 2.0
READ_TIMEOUT_DELAY = HTTP_TIMEOUT_SECONDS + 0.5
# How long the suite's Matatika adapter waits for a retry after an ERROR with attempts left
# (120 s in production: docs/providers.md, "Matatika"), so a retry that never comes ends
# within the run. A retry the emulator scripts starts well within it.
MATATIKA_RETRY_GRACE_SECONDS = 4.0
NAMESPACE = uuid.UUID("2d0f5c8e-61a4-4c4e-9d7b-3f1e0a9b8c7d")


@dataclass(frozen=True)
class Scenario:
    """One request, one fault (or one AWS-side failure), one expected outcome."""

    id: str
    provider: str
    call: Call
    fault: dict[str, Any] | None = None
    behaviour: dict[str, Any] = field(default_factory=dict)
    deadline_seconds: int = 60
    expect: str = SUCCEEDED
    error_code: str | None = None
    # Creates the provider receives: 1 means an ambiguous create was adopted, not repeated.
    creates: int | None = None
    cancelled_remotely: bool | None = None
    copies: int = 1  # the same message sent this many times (concurrent duplicates)
    body: dict[str, Any] | None = None  # replaces the generated request (AWS scenarios)
    # A second fault, on the job listing reconciliation reads before it creates again.
    listing_fault: dict[str, Any] | None = None
    # Fields the outcome event's `details` must hold.
    details: dict[str, Any] = field(default_factory=dict)
    # Reconciliation must have looked at the pipeline's own view (Matatika's latest job).
    reads_pipeline: bool = False
    # Once its job has been polled, the request is cancelled: by a cancel message on the
    # queue, or by an operator stopping its tracker execution (StopExecution).
    steer: Literal["message", "stop"] | None = None
    known_bug: str | None = None

    @property
    def request_id(self) -> str:
        return f"ft-{self.id}"

    @property
    def target(self) -> str:
        """The emulator target: the pipeline or workflow this scenario alone uses."""
        if self.provider == "deepset":
            return str(uuid.uuid5(NAMESPACE, f"{self.id}/pipeline"))
        return f"{'wf' if self.provider == 'pixxel' else 'pl'}-{self.id}"

    @property
    def workspace(self) -> str:
        return str(uuid.uuid5(NAMESPACE, f"{self.id}/workspace"))

    def request(self) -> dict[str, Any]:
        if self.body is not None:
            return {"request_id": self.request_id, **self.body}
        params: dict[str, Any]
        if self.provider == "deepset":
            params = {
                "workspace_id": self.workspace,
                "name": f"fault {self.id}",
                "pipeline_id": self.target,
                "execution_mode": "ACROSS_FILES",
                "queries": [{"query": "q1"}, {"query": "q2"}],
            }
        elif self.provider == "pixxel":
            params = {"workflow_id": self.target, "project_id": "proj-faults"}
        else:
            params = {"pipeline_id": self.target}
        return {
            "request_id": self.request_id,
            "provider": self.provider,
            "params": params,
            "tracking": self.tracking(),
            "metadata": {"scenario": self.id},
        }

    def tracking(self) -> dict[str, int]:
        tracking = {"deadline_seconds": self.deadline_seconds}
        if self.steer is not None:
            # Steered once its job has been polled: the tracker is then in a long wait, so
            # the cancel's stop of the tracker (TrackerEnded) is the one path that acts, not
            # also a poll round that happens to be in flight (which path wins is a real race,
            # fine for the invariant but not for a scenario that expects one path's details).
            tracking |= {"poll_interval_seconds": 600, "min_poll_seconds": 600}
        return tracking

    def fault_path(self, job_id: str | None = None) -> str | None:
        """The path regex that scopes this scenario's fault; None until the job id is known
        for calls addressed by job id alone (Matatika's get, stop and logs)."""
        target = re.escape(self.target)
        if self.call == "create":
            return {
                "deepset": rf"^/api/v2/workspaces/{re.escape(self.workspace)}/jobs$",
                "pixxel": rf"^/v0/workflows/{target}/jobs$",
                "matatika": rf"^/api/pipelines/{target}/jobs$",
            }[self.provider]
        if self.call == "get" and self.provider == "deepset":
            return rf"^/api/v2/workspaces/{re.escape(self.workspace)}/jobs/[^/]+$"
        if self.call == "get" and self.provider == "pixxel":
            return rf"^/v0/workflows/{target}/jobs/[^/]+$"
        if job_id is None:
            return None
        suffix = {"get": "", "cancel": "/stopped", "logs": "/logs"}[self.call]
        return rf"^/api/jobs/{re.escape(job_id)}{suffix}$"

    def listing_path(self) -> str:
        return {
            "deepset": rf"^/api/v2/workspaces/{re.escape(self.workspace)}/jobs$",
            "pixxel": rf"^/v0/workflows/{re.escape(self.target)}/jobs$",
            "matatika": rf"^/api/pipelines/{re.escape(self.target)}/jobs$",
        }[self.provider]

    def fault_method(self) -> str:
        return {"create": "POST", "get": "GET", "cancel": "PUT", "logs": "GET"}[self.call]


# ------------------------------------------------------------------ the faults
# name -> Fault fields (`after`: the provider acts first, then the fault replaces its answer)
STATUS_FAULTS: dict[str, dict[str, Any]] = {
    "500": {"status": [500]},
    "502": {"status": [502]},
    "503": {"status": [503]},
    "504": {"status": [504]},
    "429-retry-after": {"status": [429], "retry_after": "1"},
    # three in a row: more than one call's own retries, so the next layer has to retry
    "429-no-retry-after": {"status": [429, 429, 429]},
}
TRANSPORT_FAULTS: dict[str, dict[str, Any]] = {
    "connection-dropped": {"action": "drop"},
    "reset-mid-response": {"action": "reset"},
    "read-timeout": {"action": "delay", "delay": READ_TIMEOUT_DELAY},
    "malformed-json": {"action": "malformed"},
    "empty-body": {"action": "empty"},
}
# On a create, these answer after the provider made the job: the ambiguous creates that
# reconciliation must adopt. The others are refusals the provider answers before acting.
AFTER_CREATING = {"500", "502", "504", *TRANSPORT_FAULTS}
PROVIDERS = PROVIDER_NAMES
UNKNOWN_STATUS = {"deepset": "SUSPENDED", "pixxel": "paused", "matatika": "THROTTLED"}


def create_scenarios() -> list[Scenario]:
    found: list[Scenario] = []
    quick = {"queued": 0.2, "duration": 1.5}
    for provider in PROVIDERS:
        for name, fault in {**STATUS_FAULTS, **TRANSPORT_FAULTS}.items():
            after = name in AFTER_CREATING
            found.append(
                Scenario(
                    id=f"{provider}-create-{name}",
                    provider=provider,
                    call="create",
                    fault={**fault, "after": after},
                    behaviour=quick,
                    creates=1 if after else None,
                )
            )
        found += [
            Scenario(
                # the retry cannot read the job listing at first: it must not create blindly
                id=f"{provider}-create-502-then-listing-503",
                provider=provider,
                call="create",
                fault={"status": [502], "after": True},
                listing_fault={"status": [503, 503, 503]},
                behaviour=quick,
                creates=1,
            ),
            Scenario(
                id=f"{provider}-create-502-before-creating",
                provider=provider,
                call="create",
                fault={"status": [502]},
                behaviour=quick,
                creates=2,
            ),
            Scenario(
                id=f"{provider}-create-401-then-success",
                provider=provider,
                call="create",
                fault={"status": [401]},
                behaviour=quick,
                creates=2,
            ),
            Scenario(
                id=f"{provider}-create-403",
                provider=provider,
                call="create",
                fault={"status": [403]},
                expect=REJECTED,
                error_code="PROVIDER_REJECTED",
            ),
            Scenario(
                id=f"{provider}-create-404",
                provider=provider,
                call="create",
                fault={"status": [404]},
                expect=REJECTED,
                error_code="PROVIDER_REJECTED",
            ),
        ]
    return found


def get_scenarios() -> list[Scenario]:
    found: list[Scenario] = []
    # Long enough for several polls, so a fault installed at creation meets one.
    running = {"queued": 0.2, "duration": 4.0}
    for provider in PROVIDERS:
        for name, fault in {**STATUS_FAULTS, **TRANSPORT_FAULTS}.items():
            found.append(
                Scenario(
                    id=f"{provider}-get-{name}",
                    provider=provider,
                    call="get",
                    fault=fault,
                    behaviour=running,
                )
            )
        found += [
            Scenario(
                id=f"{provider}-get-never-seen-status",
                provider=provider,
                call="get",
                behaviour={**running, "raw_status": UNKNOWN_STATUS[provider]},
            ),
            Scenario(
                id=f"{provider}-get-401-then-success",
                provider=provider,
                call="get",
                fault={"status": [401]},
                behaviour=running,
            ),
            Scenario(
                # A refused GET says nothing about the job: retried, the job still ends well.
                id=f"{provider}-get-403-then-success",
                provider=provider,
                call="get",
                fault={"status": [403]},
                behaviour=running,
            ),
            Scenario(
                id=f"{provider}-get-404-job-vanished",
                provider=provider,
                call="get",
                fault={"status": [404], "count": 1000},
                behaviour=running,
                expect=FAILED,
                error_code="JOB_NOT_FOUND",
            ),
            Scenario(
                id=f"{provider}-get-stuck-forever",
                provider=provider,
                call="get",
                behaviour={"queued": 0.0, "duration": 1.0, "stuck": True},
                deadline_seconds=5,
                expect=TIMED_OUT,
                error_code="DEADLINE_EXCEEDED",
                cancelled_remotely=provider == "matatika",
            ),
        ]
    return found


def matatika_scenarios() -> list[Scenario]:
    """Matatika's stop (at the deadline) and logs (of a failed job) calls, and what its
    public docs say beyond the create page: retries, its own stops, lists without queued
    jobs."""
    found: list[Scenario] = [
        Scenario(
            # The stop reaches Matatika and every answer to it is lost: the job is looked
            # at, found stopped, and the event says it was stopped remotely.
            id="matatika-cancel-answer-lost-after-stopping",
            provider="matatika",
            call="cancel",
            fault={"action": "drop", "after": True, "count": 3},
            behaviour={"queued": 0.0, "duration": 120.0},
            deadline_seconds=5,
            expect=TIMED_OUT,
            cancelled_remotely=True,
            details={"stop_answer": "lost"},
        ),
        Scenario(
            # The stop acts, its 504 is retried, and the retry is refused (not running).
            id="matatika-cancel-504-after-stopping",
            provider="matatika",
            call="cancel",
            fault={"status": [504], "after": True},
            behaviour={"queued": 0.0, "duration": 120.0},
            deadline_seconds=5,
            expect=TIMED_OUT,
            cancelled_remotely=True,
            details={"stop_answer": "refused"},
        ),
        Scenario(
            # Attempt 1 ends in ERROR, Matatika retries it 3 s later and attempt 2 succeeds.
            id="matatika-get-error-retried-then-succeeds",
            provider="matatika",
            call="get",
            behaviour={
                "queued": 0.2,
                "duration": 1.5,
                "max_attempts": 2,
                "failed_attempts": 1,
                "retry_delay": 3.0,
            },
            details={"attempt": 2, "max_attempts": 2},
        ),
        Scenario(
            # Attempt 1 of 2 ends in ERROR and the retry never comes: failed after the grace.
            id="matatika-get-error-retry-never-comes",
            provider="matatika",
            call="get",
            behaviour={
                "queued": 0.2,
                "duration": 1.5,
                "max_attempts": 2,
                "failed_attempts": 1,
                "retry_delay": None,
            },
            expect=FAILED,
            error_code="JOB_FAILED",
            details={"attempt": 1, "max_attempts": 2, "retry_missing": True},
        ),
        Scenario(
            # Matatika's own pipeline timeout stops the job: not a cancel jobrelay made.
            id="matatika-get-stopped-by-its-timeout",
            provider="matatika",
            call="get",
            behaviour={"queued": 0.2, "duration": 30.0, "stopped_after": 1.5},
            expect=CANCELLED,
            error_code="STOPPED_AT_PROVIDER",
            details={"stopped_by": "provider"},
        ),
        Scenario(
            # The create's answer is lost while the job is QUEUED and the lists hide queued
            # jobs: reconciliation finds it as the pipeline's latest job and creates nothing.
            # Queued far longer than the record's redelivery (1 s), on any machine.
            id="matatika-create-502-while-queued-unlisted",
            provider="matatika",
            call="create",
            fault={"status": [502], "after": True},
            behaviour={"queued": 15.0, "duration": 1.5, "listed_while_queued": False},
            creates=1,
            reads_pipeline=True,
        ),
    ]
    faults = {**STATUS_FAULTS, **TRANSPORT_FAULTS, "401-then-success": {"status": [401]}}
    for name, fault in {**faults, "403": {"status": [403]}, "404": {"status": [404]}}.items():
        refused = name in ("403", "404")
        found.append(
            Scenario(
                id=f"matatika-cancel-{name}",
                provider="matatika",
                call="cancel",
                fault=fault,
                behaviour={"queued": 0.0, "duration": 120.0},
                deadline_seconds=5,
                expect=TIMED_OUT,
                cancelled_remotely=not refused,
            )
        )
        found.append(
            Scenario(
                id=f"matatika-logs-{name}",
                provider="matatika",
                call="logs",
                fault=fault,
                behaviour={"queued": 0.2, "duration": 4.0, "outcome": "failure"},
                expect=FAILED,
                error_code="JOB_FAILED",
            )
        )
    return found


# Who the suite's cancel messages say asked, and who an operator's stop is recorded as.
CANCELLED_BY = "fault suite"
OPERATOR = "operator (StopExecution)"


def steer_scenarios() -> list[Scenario]:
    """A tracked job cancelled (a message, or an operator's stop of its tracker) while the
    provider's stop fails: the outcome still comes, `cancelled`, and `cancelled_remotely`
    says what the provider shows when the job is looked at after the failed stop."""
    long_job = {"queued": 0.0, "duration": 120.0}
    every_attempt = {"status": [503], "count": 20}  # more than every retry of every layer
    return [
        Scenario(
            # refused before it acts, once: the stop is sent again and acts
            id="matatika-steer-stop-500",
            provider="matatika",
            call="cancel",
            steer="message",
            fault={"status": [500]},
            behaviour=long_job,
            expect=CANCELLED,
            cancelled_remotely=True,
        ),
        Scenario(
            # unavailable through every retry: tracking ends, the job may still run
            id="matatika-steer-stop-503-every-attempt",
            provider="matatika",
            call="cancel",
            steer="message",
            fault=every_attempt,
            behaviour=long_job,
            expect=CANCELLED,
            cancelled_remotely=False,
        ),
        Scenario(
            # acts, answers 504; the stop sent again is refused (no longer running)
            id="matatika-steer-stop-504-after-stopping",
            provider="matatika",
            call="cancel",
            steer="message",
            fault={"status": [504], "after": True},
            behaviour=long_job,
            expect=CANCELLED,
            cancelled_remotely=True,
            details={"stop_answer": "refused"},
        ),
        Scenario(
            # answers after the client gave up (it acts late, or the retry acts)
            id="matatika-steer-stop-read-timeout",
            provider="matatika",
            call="cancel",
            steer="message",
            fault=TRANSPORT_FAULTS["read-timeout"],
            behaviour=long_job,
            expect=CANCELLED,
            cancelled_remotely=True,
        ),
        Scenario(
            # acts, and every answer to it is lost: looked at, found stopped
            id="matatika-steer-stop-answer-lost-after-stopping",
            provider="matatika",
            call="cancel",
            steer="message",
            fault={"action": "drop", "after": True, "count": 3},
            behaviour=long_job,
            expect=CANCELLED,
            cancelled_remotely=True,
            details={"stop_answer": "lost"},
        ),
        Scenario(
            # an operator's stop whose stop at Matatika is unavailable through every retry
            id="matatika-operator-stop-503-every-attempt",
            provider="matatika",
            call="cancel",
            steer="stop",
            fault=every_attempt,
            behaviour=long_job,
            expect=CANCELLED,
            cancelled_remotely=False,
        ),
    ]


def aws_scenarios() -> list[Scenario]:
    quick = {"queued": 0.2, "duration": 1.5}
    return [
        Scenario(
            id="aws-same-message-three-times",
            provider="pixxel",
            call="aws",
            behaviour=quick,
            copies=3,
            creates=1,
        ),
        Scenario(
            id="aws-ledger-write-fails-after-create",
            provider="matatika",
            call="aws",
            behaviour=quick,
            creates=1,
        ),
        Scenario(
            id="aws-tracker-start-fails-after-create",
            provider="deepset",
            call="aws",
            behaviour=quick,
            creates=1,
        ),
        Scenario(id="aws-sns-publish-fails-once", provider="pixxel", call="aws", behaviour=quick),
        Scenario(
            id="aws-sns-publish-of-rejection-fails-once",
            provider="matatika",
            call="aws",
            body={"provider": "matatika", "params": {"pipeline_id": ""}},
            expect=REJECTED,
            error_code="REQUEST_INVALID",
        ),
        Scenario(
            id="aws-poll-task-throws",
            provider="matatika",
            call="aws",
            behaviour={"queued": 0.2, "duration": 3.0},
            expect=FAILED,
            error_code="RuntimeError",
        ),
        Scenario(
            id="aws-dlq-copy-fails-after-rejected-event",
            provider="pixxel",
            call="aws",
            body={"provider": "pixxel", "params": {"workflow_id": "../x", "project_id": "p"}},
            expect=REJECTED,
            error_code="REQUEST_INVALID",
        ),
        Scenario(
            # TrackerEnded fails on the stop's event; Lambda delivers it again
            id="aws-tracker-ended-fails-once",
            provider="matatika",
            call="aws",
            steer="stop",
            behaviour={"queued": 0.0, "duration": 120.0},
            expect=CANCELLED,
            cancelled_remotely=True,
        ),
        Scenario(
            # TrackerEnded fails after it published; delivered again, it publishes nothing
            id="aws-tracker-ended-fails-after-publishing",
            provider="pixxel",
            call="aws",
            steer="message",
            behaviour={"queued": 0.0, "duration": 120.0},
            expect=CANCELLED,
            cancelled_remotely=False,
        ),
    ]


SCENARIOS: list[Scenario] = [
    *create_scenarios(),
    *get_scenarios(),
    *matatika_scenarios(),
    *steer_scenarios(),
    *aws_scenarios(),
]
BY_ID = {scenario.id: scenario for scenario in SCENARIOS}
assert len(BY_ID) == len(SCENARIOS), "scenario ids must be unique"

"""Pixxel satellite-imagery workflow jobs (docs/providers.md, "Pixxel")."""

# No `from __future__ import annotations`: pydantic takes these models' annotations as they
# are instead of evaluating strings (a tenth of their class creation, on every cold start).

import re
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from jobrelay.errors import (
    FieldProblem,
    ProviderProtocolError,
    ProviderRejected,
)
from jobrelay.models import (
    Contract,
    ErrorInfo,
    JobRef,
    JobStatus,
    LazyModel,
    PathId,
    StatusReport,
)
from jobrelay.observability import logger
from jobrelay.providers.base import (
    REJECTING_STATUS,
    CreatedJob,
    Provider,
    aware_time,
    earliest_unclaimed,
    segment,
)
from jobrelay.providers.http import json_or_none


class PixxelParams(Contract):
    """Pixxel `POST /v0/workflows/{workflow_id}/jobs?project_id=` (docs/providers.md)."""

    workflow_id: PathId
    project_id: PathId


STATUS_MAP: dict[str, JobStatus] = {
    "completed": JobStatus.SUCCEEDED,
    "failed": JobStatus.FAILED,
    "running": JobStatus.RUNNING,
}
_unknown_seen: set[str] = set()
# Reconciliation narrows the (unpaginated) workflow job list with one `created_on` filter per
# UTC day of the window (assumed: the docs name the filter, not its format; the emulator
# matches a `YYYY-MM-DD` prefix of `created_at`). A window over this many days is listed
# unfiltered instead.
CREATED_ON_MAX_DAYS = 3


class PixxelTask(LazyModel):
    model_config = ConfigDict(extra="allow")

    id: str | None = None
    name: str | None = None
    status: str | None = None
    err_msg: str | None = None
    failure_type: str | None = None


class PixxelValError(LazyModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    err: str | None = None
    reason: str | None = None
    component_name: str | None = None


class PixxelJob(LazyModel):
    model_config = ConfigDict(extra="allow")

    id: str
    status: str
    workflow_id: str | None = None
    progress: str | float | int | None = None
    cost: int | float | None = None
    estimated_duration: int | float | None = None
    time_taken: int | float | str | None = None
    val_errors: list[PixxelValError] | None = None
    tasks: list[PixxelTask] | None = None


def parse_progress(value: str | float | int | None) -> float | None:
    """`"45%"` (or 45) as 0.45; None when it says nothing usable."""
    if value is None:
        return None
    if isinstance(value, str):
        match = re.search(r"(\d+(?:\.\d+)?)", value)
        if not match:
            return None
        value = float(match.group(1))
    return min(1.0, max(0.0, float(value) / 100.0))


def map_status(job: PixxelJob) -> StatusReport:
    raw = job.status
    status = STATUS_MAP.get(raw.lower())
    if status is None:
        # Pixxel's status is free text; keep following the job and say so once per value.
        if raw not in _unknown_seen:
            _unknown_seen.add(raw)
            logger.warning("unknown pixxel job status, treated as running", raw_status=raw)
        status = JobStatus.RUNNING
    details: dict[str, Any] = {}
    if job.cost is not None:
        details["cost"] = job.cost
    if job.time_taken is not None:
        details["time_taken"] = job.time_taken
    error = None
    if status is JobStatus.FAILED:
        failed = [
            {"name": t.name, "err_msg": t.err_msg, "failure_type": t.failure_type}
            for t in job.tasks or []
            if (t.status or "").lower() == "failed" or t.err_msg
        ]
        if failed:
            details["failed_tasks"] = failed
        problems = _val_problems(job.val_errors or [])
        message = "; ".join(f"{t['name']}: {t['err_msg']}" for t in failed) or "job failed"
        error = ErrorInfo(
            code="JOB_FAILED",
            message=message,
            problems=[p.as_dict() for p in problems],
        )
    return StatusReport(
        status=status,
        raw_status=raw,
        progress=parse_progress(job.progress),
        estimated_duration_seconds=job.estimated_duration,
        details=details,
        error=error,
    )


def _val_problems(errors: list[PixxelValError]) -> list[FieldProblem]:
    return [
        FieldProblem(
            field=e.component_name or f"{e.from_ or '?'}->{e.to or '?'}",
            message=e.reason or e.err or "invalid workflow",
            kind="workflow_validation",
        )
        for e in errors
    ]


def _error_problem(payload: Any) -> tuple[str, list[FieldProblem]]:
    """Pixxel's `{"error": {"code", "message", "details"}}` as a message and problems."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return "refused", []
    code = str(error.get("code") or "error")
    message = str(error.get("message") or code)
    return message, [FieldProblem(field="params", message=message, kind=code)]


class PixxelProvider(Provider):
    name = "pixxel"
    title = "Pixxel"
    params_model = PixxelParams
    default_base_url = "https://api.pixxel.space"
    public_hosts = ("api.pixxel.space",)
    can_cancel = False  # no cancel, stop or delete endpoint exists

    def auth_headers(self, *, refresh: bool = False) -> dict[str, str]:
        # Pixxel's docs show the raw key in the Authorization header, without a scheme.
        return {"Authorization": self.key.value(refresh=refresh)}

    def _jobs_path(self, workflow_id: str) -> str:
        return f"/v0/workflows/{segment(workflow_id)}/jobs"

    def create(self, params: PixxelParams) -> CreatedJob:
        response = self.send(
            "POST",
            self._jobs_path(params.workflow_id),
            idempotent=False,
            params={"project_id": params.project_id},
        )
        if response.status_code in REJECTING_STATUS:
            message, problems = _error_problem(json_or_none(response))
            raise self.rejection(response, problems, message)
        if response.status_code not in (200, 201):
            raise self.unexpected(response)
        job = _parse(self.body(response))
        if job.val_errors:
            problems = _val_problems(job.val_errors)
            raise self.rejection(
                response,
                problems,
                "the workflow is invalid: " + "; ".join(p.message for p in problems),
            )
        return CreatedJob(
            remote_job_id=job.id,
            locator={"workflow_id": params.workflow_id},
            report=map_status(job),
        )

    def find_created(
        self, params: PixxelParams, since: datetime, *, exclude: Collection[str] = ()
    ) -> CreatedJob | None:
        """The job an ambiguous create of this workflow made, if the workflow lists one.

        A job is ours when it belongs to the same workflow and was created at or after
        `since`; among several, the earliest (the first attempt is the earliest moment ours
        can exist). Pixxel jobs carry nothing of the request (a create has no body) and not
        even the `project_id`, and jobrelay does not know the `created_by` user its key maps
        to, so any job another producer starts on the same workflow in that window, with
        any key, would be adopted instead: the residual risk (other jobrelay requests' jobs
        are in `exclude`: the ledger claims each job for its request). List items are
        lighter than a job (no `tasks`, no `val_errors`): a found job that is not running
        or completed is read with its own GET, and one with `val_errors` is refused as the
        create would have been. A listing that cannot be read is raised (the record is
        retried later): creating again without having looked could make a second job.
        """
        candidates: list[tuple[datetime, str, PixxelJob]] = []
        for created_on in _created_on_filters(since, datetime.now(UTC)):
            query = {"created_on": created_on} if created_on else {}
            response = self.send(
                "GET", self._jobs_path(params.workflow_id), idempotent=True, params=query
            )
            if response.status_code in (403, 404):
                # The workflow is gone or closed to us: the create will answer for good.
                return None
            if response.status_code != 200:
                raise self.listing_error(response)
            payload = self.body(response)
            items = payload.get("jobs") if isinstance(payload, dict) else None
            if not isinstance(items, list):
                raise ProviderProtocolError("pixxel answered a job listing we cannot read")
            for item in items:
                job = _listed_job(item, params.workflow_id)
                created = aware_time(item.get("created_at")) if isinstance(item, dict) else None
                if job is not None and created is not None and created >= since:
                    candidates.append((created, job.id, job))
        job = earliest_unclaimed(self.name, candidates, exclude)
        if job is None:
            return None
        if STATUS_MAP.get(job.status.lower()) not in (JobStatus.RUNNING, JobStatus.SUCCEEDED):
            # A failed (or unknown) job's failure details are only in its own GET.
            job = self._job(params.workflow_id, job.id)
        if job.val_errors:
            problems = _val_problems(job.val_errors)
            raise ProviderRejected(
                "pixxel refused the request: the workflow is invalid: "
                + "; ".join(p.message for p in problems),
                status_code=200,
                problems=problems,
            )
        return CreatedJob(
            remote_job_id=job.id,
            locator={"workflow_id": params.workflow_id},
            report=map_status(job),
        )

    def _job(self, workflow_id: str, job_id: str) -> PixxelJob:
        """A found job's own GET (reconciliation): raised when it cannot be read."""
        response = self.send(
            "GET", f"{self._jobs_path(workflow_id)}/{segment(job_id)}", idempotent=True
        )
        if response.status_code != 200:
            raise self.listing_error(response)
        return _parse(self.body(response))

    def get_status(self, job: JobRef) -> StatusReport:
        workflow_id = job.locator.get("workflow_id", "")
        response = self.send(
            "GET", f"{self._jobs_path(workflow_id)}/{segment(job.remote_job_id)}", idempotent=True
        )
        self.ensure_found(response, job)
        if response.status_code != 200:
            raise self.tracking_failure(response)
        return map_status(_parse(self.body(response)))


def _created_on_filters(since: datetime, now: datetime) -> list[str | None]:
    """One `created_on` value per UTC day from `since` to `now`; `[None]` (no filter) when
    the window spans more than `CREATED_ON_MAX_DAYS` days."""
    first, last = since.astimezone(UTC).date(), now.astimezone(UTC).date()
    days = (last - first).days + 1
    if days > CREATED_ON_MAX_DAYS:
        return [None]
    return [(first + timedelta(days=n)).isoformat() for n in range(max(1, days))]


def _listed_job(item: Any, workflow_id: str) -> PixxelJob | None:
    """A listed job of this workflow, or None when it is unreadable or another workflow's.

    Whatever `tasks` or `val_errors` an item carries are dropped: list items are documented
    without them, so failure details come from the job's own GET only."""
    try:
        job = PixxelJob.model_validate(item)
    except ValidationError:
        return None
    if job.workflow_id is not None and job.workflow_id != workflow_id:
        return None
    return job.model_copy(update={"tasks": None, "val_errors": None})


def _parse(payload: Any) -> PixxelJob:
    try:
        return PixxelJob.model_validate(payload)
    except ValidationError as exc:
        raise ProviderProtocolError(f"pixxel answered a job we cannot read: {exc}") from exc

"""deepset Cloud batch query jobs (PROVIDERS.md, seed 000)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from jobrelay.errors import FieldProblem, ProviderProtocolError
from jobrelay.models import DeepsetParams, ErrorInfo, JobRef, JobStatus, StatusReport
from jobrelay.providers.base import REJECTING_STATUS, CreatedJob, Provider, segment
from jobrelay.providers.http import json_or_none

STATUS_MAP: dict[str, JobStatus] = {
    "CREATED": JobStatus.QUEUED,
    "STARTED": JobStatus.RUNNING,
    "ENDED": JobStatus.SUCCEEDED,
    "FAILED": JobStatus.FAILED,
}


class DeepsetJob(BaseModel):
    """The Job resource; only the fields jobrelay reads, others tolerated."""

    model_config = ConfigDict(extra="allow")

    job_id: str
    status: str
    name: str | None = None
    pipeline_name: str | None = None
    executed_requests: int | None = None
    total_requests: int | None = None
    duration: float | None = None
    created_at: datetime | None = None
    executed_at: datetime | None = None


def map_status(job: DeepsetJob) -> StatusReport:
    status = STATUS_MAP.get(job.status.upper(), JobStatus.RUNNING)
    details: dict[str, Any] = {
        key: value
        for key, value in {
            "executed_requests": job.executed_requests,
            "total_requests": job.total_requests,
            "duration_seconds": job.duration,
            "pipeline_name": job.pipeline_name,
        }.items()
        if value is not None
    }
    progress = None
    if job.total_requests:
        executed = job.executed_requests or 0
        progress = min(1.0, max(0.0, executed / job.total_requests))
        if status is JobStatus.SUCCEEDED and executed < job.total_requests:
            # ENDED does not promise every query ran; consumers need to know the shortfall.
            details["request_shortfall"] = job.total_requests - executed
    error = None
    if status is JobStatus.FAILED:
        error = ErrorInfo(code="JOB_FAILED", message="the deepset job ended in FAILED")
    return StatusReport(
        status=status, raw_status=job.status, progress=progress, details=details, error=error
    )


def problems_from_detail(body: Any) -> list[FieldProblem]:
    """deepset's 422 `{"detail": [{"loc": [...], "msg": ..., "type": ...}]}` as field problems."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return [FieldProblem(field="params", message=detail)]
    problems = []
    for item in detail if isinstance(detail, list) else []:
        if not isinstance(item, dict):
            continue
        loc = [str(part) for part in item.get("loc", []) if part not in ("body", "query")]
        problems.append(
            FieldProblem(
                field="params." + ".".join(loc) if loc else "params",
                message=str(item.get("msg", "invalid")),
                kind=str(item.get("type", "invalid")),
            )
        )
    return problems


class DeepsetProvider(Provider):
    name = "deepset"
    can_cancel = False  # no cancel endpoint is documented: the deadline stops tracking only

    def _jobs_path(self, workspace_id: object) -> str:
        return f"/api/v2/workspaces/{segment(workspace_id)}/jobs"

    def _post(self, params: DeepsetParams, *, dry_run: bool) -> Any:
        body = params.model_dump(
            mode="json", exclude={"workspace_id", "dry_run"}, exclude_none=True
        )
        response = self.send(
            "POST",
            self._jobs_path(params.workspace_id),
            idempotent=dry_run,  # a dry run stores nothing, so it is safe to repeat
            params={"dry_run": "true" if dry_run else "false"},
            json=body,
        )
        if response.status_code in (200, 201):
            return self.body(response)
        if response.status_code in REJECTING_STATUS:
            payload = json_or_none(response)
            problems = problems_from_detail(payload)
            message = "; ".join(f"{p.field}: {p.message}" for p in problems) or "refused"
            raise self.rejection(response, problems, message)
        raise self.unexpected(response)

    def create(self, params: DeepsetParams) -> CreatedJob:
        job = _parse(self._post(params, dry_run=False))
        return CreatedJob(
            remote_job_id=job.job_id,
            locator={"workspace_id": str(params.workspace_id)},
            report=map_status(job),
        )

    def validate(self, params: DeepsetParams) -> dict[str, Any]:
        payload = self._post(params, dry_run=True)
        details: dict[str, Any] = {"dry_run": True}
        if isinstance(payload, dict):
            for key in ("name", "pipeline_id", "pipeline_name", "total_requests"):
                if payload.get(key) is not None:
                    details[key] = payload[key]
        return details

    def get_status(self, job: JobRef) -> StatusReport:
        workspace_id = job.locator.get("workspace_id", "")
        response = self.send(
            "GET",
            f"{self._jobs_path(workspace_id)}/{segment(job.remote_job_id)}",  # (assumed) path
            idempotent=True,
        )
        self.ensure_found(response, job)
        if response.status_code != 200:
            raise self.unexpected(response)
        return map_status(_parse(self.body(response)))


def _parse(payload: Any) -> DeepsetJob:
    try:
        return DeepsetJob.model_validate(payload)
    except ValidationError as exc:
        raise ProviderProtocolError(f"deepset answered a job we cannot read: {exc}") from exc

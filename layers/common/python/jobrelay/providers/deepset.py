"""deepset Cloud batch query jobs (docs/providers.md, "deepset Cloud")."""

# No `from __future__ import annotations`: pydantic takes these models' annotations as they
# are instead of evaluating strings (a tenth of their class creation, on every cold start).

from collections.abc import Collection
from datetime import datetime
from typing import Annotated, Any, Literal, Self
from uuid import UUID

from pydantic import ConfigDict, Field, StringConstraints, ValidationError, model_validator

from jobrelay.errors import FieldProblem, ProviderProtocolError
from jobrelay.models import (
    Contract,
    ErrorInfo,
    JobRef,
    JobStatus,
    LazyModel,
    PlainJsonObject,
    StatusReport,
    StrictInt,
)
from jobrelay.providers.base import (
    REJECTING_STATUS,
    CreatedJob,
    Provider,
    earliest_unclaimed,
    segment,
)
from jobrelay.providers.http import json_or_none


class DeepsetQuery(Contract):
    query: Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
    filters: PlainJsonObject | None = None
    params: PlainJsonObject | None = None
    group_name: str | None = None
    query_label: str | None = None
    query_index: StrictInt | None = None
    absolute_query_index: StrictInt | None = None


class DeepsetParams(Contract):
    """deepset Cloud `POST /api/v2/workspaces/{workspace_id}/jobs` fields (docs/providers.md)."""

    workspace_id: UUID
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    pipeline_id: UUID
    execution_mode: Literal["PER_FILE", "ACROSS_FILES"]
    queries: Annotated[list[DeepsetQuery], Field(min_length=1, max_length=10_000)] | None = None
    query_set_id: UUID | None = None
    concurrency: Annotated[int, Field(ge=1, le=20, strict=True)] = 3
    description: Annotated[str, StringConstraints(max_length=2_000)] | None = None
    dry_run: Annotated[bool, Field(strict=True)] = False

    @model_validator(mode="after")
    def _queries_or_query_set(self) -> Self:
        if self.queries is None and self.query_set_id is None:
            raise ValueError("one of 'queries' or 'query_set_id' is required")
        return self


STATUS_MAP: dict[str, JobStatus] = {
    "CREATED": JobStatus.QUEUED,
    "STARTED": JobStatus.RUNNING,
    "ENDED": JobStatus.SUCCEEDED,
    "FAILED": JobStatus.FAILED,
}
# Reconciliation lists the workspace's jobs page by page, newest first (assumed: the list
# endpoint, its `limit`/`page_number` paging, its `{"data", "has_more"}` body and its order
# are not in the public docs). It stops at the first job older than the window, or here.
LIST_PAGE_SIZE = 50
LIST_MAX_PAGES = 20


class DeepsetJob(LazyModel):
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
    title = "deepset Cloud"
    params_model = DeepsetParams
    default_base_url = "https://api.cloud.deepset.ai"
    public_hosts = ("api.cloud.deepset.ai", "api.us.deepset.ai")
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
            raise self.tracking_failure(response)
        return map_status(_parse(self.body(response)))

    def find_created(
        self, params: DeepsetParams, since: datetime, *, exclude: Collection[str] = ()
    ) -> CreatedJob | None:
        """The job an ambiguous create of these params made, if the workspace shows one.

        A job is ours when it is in the same workspace, has the same `pipeline_id`, `name`
        and `execution_mode`, and was created at or after `since`; among several, the
        earliest (the first attempt is the earliest moment ours can exist). deepset stores
        nothing that ties a job to our request id, so a job another producer created with the
        same pipeline and name in that window would be adopted instead: that is the residual
        risk, small because `name` is the producer's own. (Other jobrelay requests' jobs are
        in `exclude`: the ledger claims each job for its request.)
        A listing that cannot be read is raised (the record is retried later): creating
        again without having looked could make a second job.
        """
        listed = self.listed_since(
            self._jobs_path(params.workspace_id),
            since,
            pages=range(1, LIST_MAX_PAGES + 1),
            query=lambda page: {"limit": LIST_PAGE_SIZE, "page_number": page},
            read_page=_listing,
            created_key="created_at",
            page_size=LIST_PAGE_SIZE,
        )
        if listed is None:
            return None  # the workspace is gone or closed to us
        candidates = [
            (created, job.job_id, job)
            for created, item in listed
            if _same_job(item, params) and (job := _parse_or_none(item)) is not None
        ]
        job = earliest_unclaimed(self.name, candidates, exclude)
        if job is None:
            return None
        return CreatedJob(
            remote_job_id=job.job_id,
            locator={"workspace_id": str(params.workspace_id)},
            report=map_status(job),
        )


def _listing(payload: Any) -> tuple[list[dict[str, Any]], bool]:
    """(jobs, is the last page) of one page: `{"data": [...], "has_more": ...}` or a bare
    list (one page)."""
    items = payload.get("data") if isinstance(payload, dict) else payload
    if not isinstance(items, list):
        raise ProviderProtocolError("deepset answered a job listing we cannot read")
    has_more = bool(payload.get("has_more", True)) if isinstance(payload, dict) else False
    return [item for item in items if isinstance(item, dict)], not has_more


def _same_job(item: dict[str, Any], params: DeepsetParams) -> bool:
    """Same pipeline, name and execution mode as the params (a mode the listing omits is
    not held against the job)."""
    try:
        pipeline = UUID(str(item.get("pipeline_id")))
    except ValueError:
        return False
    mode = item.get("execution_mode")
    return (
        pipeline == params.pipeline_id
        and item.get("name") == params.name
        and (mode is None or mode == params.execution_mode)
    )


def _parse_or_none(payload: Any) -> DeepsetJob | None:
    try:
        return DeepsetJob.model_validate(payload)
    except ValidationError:
        return None


def _parse(payload: Any) -> DeepsetJob:
    try:
        return DeepsetJob.model_validate(payload)
    except ValidationError as exc:
        raise ProviderProtocolError(f"deepset answered a job we cannot read: {exc}") from exc

"""Matatika ELT pipeline jobs on Meltano (docs/providers.md, "Matatika")."""

# No `from __future__ import annotations`: pydantic takes these models' annotations as they
# are instead of evaluating strings (a tenth of their class creation, on every cold start).

import json
import math
import threading
import time
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
from pydantic import ConfigDict, ValidationError

from jobrelay.errors import (
    ConfigurationError,
    FieldProblem,
    ProviderProtocolError,
    ProviderUnavailable,
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


class MatatikaParams(Contract):
    """Matatika `POST /api/pipelines/{pipeline_id}/jobs` (docs/providers.md)."""

    pipeline_id: PathId


STATUS_MAP: dict[str, JobStatus] = {
    "QUEUED": JobStatus.QUEUED,
    "RUNNING": JobStatus.RUNNING,
    "COMPLETE": JobStatus.SUCCEEDED,
    "ERROR": JobStatus.FAILED,
    "STOPPED": JobStatus.CANCELLED,  # stopped at the provider: its timeout or a person
    "UNKNOWN": JobStatus.RUNNING,  # legacy value: keep following until the deadline
}
LOG_TAIL_LINES = 20
LOG_TAIL_BYTES = 4096
DEFAULT_TOKEN_URL = "https://identity.matatika.com/oauth/token"  # noqa: S105 - a URL
DEFAULT_AUDIENCE = "https://app.matatika.com/api"
TOKEN_REFRESH_MARGIN_SECONDS = 300
# Reconciliation reads the pipeline's jobs newest first (`sort=created,desc`; the HAL
# `_embedded.jobs` collection and its paging are assumed) until a job is older than the
# window, or this many pages.
LIST_PAGE_SIZE = 50
LIST_MAX_PAGES = 10
# An ERROR whose job has attempts left (`attempt < maxAttempts`) may be retried by Matatika
# (a pipeline's `maxRetries`). When the retry starts is not documented (assumed: within this
# many seconds of the error's `endTime`); until then the job is reported running and looked
# at again every RETRY_RECHECK_SECONDS, after it as failed. Whether a retry reuses the job
# or makes a new one is not documented either: a retry is followed when it reuses the job;
# one made as a new job is not followed, and the failure says its retry did not show.
RETRY_GRACE_SECONDS = 120
RETRY_RECHECK_SECONDS = 15
# The key of the latest job in a pipeline's view (`_embedded.'latest job'` on Matatika's
# pipelines page).
LATEST_JOB_KEY = "latest job"


class MatatikaJob(LazyModel):
    model_config = ConfigDict(extra="allow")

    id: str
    status: str
    type: str | None = None
    created: str | None = None
    attempt: int | None = None
    maxAttempts: int | None = None
    exitCode: int | None = None
    startTime: str | None = None
    endTime: str | None = None
    # Dropped from Matatika's docs in 2021 with the `enable-task-details` header that
    # unlocked them: read when present, never needed (failures carry the log tail).
    taskName: str | None = None
    exitMessage: str | None = None
    errorMessage: str | None = None


def map_status(
    job: MatatikaJob,
    now: datetime | None = None,
    *,
    retry_grace_seconds: float = RETRY_GRACE_SECONDS,
    log_tail: list[str] | None = None,
) -> StatusReport:
    """The job's normalized status at `now`, with its attempt, who stopped it, and for an
    ERROR with attempts left whether Matatika's retry is still due."""
    status = STATUS_MAP.get(job.status.upper(), JobStatus.RUNNING)
    details: dict[str, Any] = {}
    if job.exitCode is not None:
        details["exit_code"] = job.exitCode
    if job.attempt is not None:
        details["attempt"] = job.attempt
    if job.maxAttempts is not None:
        details["max_attempts"] = job.maxAttempts
    if log_tail:
        details["log_tail"] = log_tail
    error = None
    recheck = None
    if status is JobStatus.CANCELLED:
        # The tracker reports its own stop (at the deadline) as timed out; a STOPPED seen
        # while following the job is Matatika's: the pipeline's timeout or a person.
        details["stopped_by"] = "provider"
        error = ErrorInfo(
            code="STOPPED_AT_PROVIDER",
            message="Matatika stopped the job (the pipeline's timeout, 300 s when it is 0, "
            "or a person); jobrelay did not cancel it",
        )
    if status is JobStatus.FAILED:
        message = (
            job.errorMessage
            or _error_line(log_tail or [])
            or job.exitMessage
            or "the pipeline job ended in ERROR"
        )
        if job.attempt is not None and job.maxAttempts is not None:
            message = f"{message} (attempt {job.attempt} of {job.maxAttempts})"
        error = ErrorInfo(code="JOB_FAILED", message=message)
        left = _retry_time_left(job, now or datetime.now(UTC), retry_grace_seconds)
        if left is not None and left > 0:
            # Matatika is about to retry: keep following, look again soon.
            status = JobStatus.RUNNING
            details["retry_pending"] = True
            recheck = max(1, math.ceil(min(left, RETRY_RECHECK_SECONDS)))
        elif left is not None:
            details["retry_missing"] = True
            error.message += (
                f"; Matatika's retry did not start within {retry_grace_seconds:g} s of the error"
            )
    return StatusReport(
        status=status,
        raw_status=job.status,
        details=details,
        error=error,
        recheck_seconds=recheck,
    )


def _retry_time_left(job: MatatikaJob, now: datetime, grace: float) -> float | None:
    """Seconds left for Matatika's retry of an ERROR with attempts left; None when none is
    due (last attempt, attempts not reported, or no `endTime` to measure from)."""
    if job.attempt is None or job.maxAttempts is None or job.attempt >= job.maxAttempts:
        return None
    ended = aware_time(job.endTime)
    if ended is None:
        return None
    return grace - (now - ended).total_seconds()


def _error_line(tail: list[str]) -> str | None:
    """The last log line that names an error: the failure's message when the job has none."""
    for word in ("error", "fail"):
        for line in reversed(tail):
            if word in line.lower():
                return line[:500]
    return None


def spring_problems(payload: Any) -> tuple[str, list[FieldProblem]]:
    """Spring's `{"timestamp","status","error","message","path","errors"}` error body."""
    if not isinstance(payload, dict):
        return "refused", []
    message = str(payload.get("message") or payload.get("error") or "refused")
    problems = []
    for item in payload.get("errors") or []:
        if isinstance(item, dict):
            problems.append(
                FieldProblem(
                    field="params." + str(item.get("field") or item.get("objectName") or ""),
                    message=str(item.get("defaultMessage") or item.get("message") or "invalid"),
                    kind=str(item.get("code") or "invalid"),
                )
            )
    return message, problems or [FieldProblem(field="params", message=message)]


class _TokenCache:
    """OAuth client-credentials tokens, shared across invocations of a warm Lambda."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}

    def get(self, key: str) -> str | None:
        with self._lock:
            token, expires = self._tokens.get(key, ("", 0.0))
        return token if token and time.monotonic() < expires else None

    def put(self, key: str, token: str, lifetime: float) -> None:
        with self._lock:
            self._tokens[key] = (token, time.monotonic() + lifetime)


_tokens = _TokenCache()


class MatatikaProvider(Provider):
    name = "matatika"
    title = "Matatika"
    params_model = MatatikaParams
    default_base_url = "https://app.matatika.com"
    public_hosts = ("app.matatika.com", "identity.matatika.com")
    credential_forms = frozenset({"api_key", "token", "client_credentials"})
    can_cancel = True
    retry_grace_seconds: ClassVar[float] = RETRY_GRACE_SECONDS

    def auth_headers(self, *, refresh: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token(refresh=refresh)}"}

    def _token(self, *, refresh: bool) -> str:
        """A static token, or one exchanged for the client id and secret kept in the secret.

        The secret is either the token itself or JSON `{"client_id", "client_secret"}`
        (optionally `token_url`, `audience`): machine access by OAuth client credentials.
        """
        secret = self.key.value(refresh=refresh)
        if not secret.startswith("{"):
            return secret
        try:
            creds = json.loads(secret)
            client_id, client_secret = creds["client_id"], creds["client_secret"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError("the matatika secret is not a token nor client JSON") from exc
        cache_key = f"{self.key.secret_arn}:{client_id}"
        cached = None if refresh else _tokens.get(cache_key)
        if cached:
            return cached
        token_url = str(creds.get("token_url") or DEFAULT_TOKEN_URL)
        response = self.http.request(
            "POST",
            token_url,
            idempotent=True,
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret,
                "audience": str(creds.get("audience") or DEFAULT_AUDIENCE),
            },
        )
        payload = json_or_none(response)
        if response.status_code != 200 or not isinstance(payload, dict):
            raise ConfigurationError(f"matatika token exchange answered {response.status_code}")
        token = str(payload.get("access_token") or "")
        if not token:
            raise ConfigurationError("matatika token exchange returned no access_token")
        lifetime = float(payload.get("expires_in") or 7200) - TOKEN_REFRESH_MARGIN_SECONDS
        _tokens.put(cache_key, token, max(60.0, lifetime))
        return token

    def create(self, params: MatatikaParams) -> CreatedJob:
        response = self.send(
            "POST", f"/api/pipelines/{segment(params.pipeline_id)}/jobs", idempotent=False
        )
        if response.status_code == 409:
            # Only one job may run per pipeline: refused without effect, so try again later.
            raise ProviderUnavailable(
                "matatika pipeline busy (409): another job of this pipeline is running",
                status_code=409,
            )
        if response.status_code in REJECTING_STATUS:
            message, problems = spring_problems(json_or_none(response))
            raise self.rejection(response, problems, message)
        if response.status_code not in (200, 201):
            raise self.unexpected(response)
        job = _parse(self.body(response))
        return CreatedJob(
            remote_job_id=job.id,
            locator={"pipeline_id": params.pipeline_id},
            report=map_status(job),
        )

    def find_created(
        self, params: MatatikaParams, since: datetime, *, exclude: Collection[str] = ()
    ) -> CreatedJob | None:
        """The job an ambiguous create of this pipeline made, if the pipeline lists one.

        A job is ours when it is a `PIPELINE_RUN` of the same pipeline created at or after
        `since`; among several, the earliest (the first attempt is the earliest moment ours
        can exist). A pipeline run carries nothing of the request, so a run another
        producer (or a schedule inside Matatika, or a person in the app) started on the same
        pipeline in that window would be adopted instead: the residual risk (other jobrelay
        requests' jobs are in `exclude`: the ledger claims each job for its request). It is
        smaller than it looks: Matatika runs one job per pipeline at a time and refuses a second
        create while one runs (409), so a foreign run inside the window has to have ended
        before ours could start. When the listing shows no job of the window, the pipeline's
        latest job is looked at too (`_latest_job`: the lists may hide a queued one). A
        listing that cannot be read is raised (the record is retried later): creating again
        without having looked could make a second job.
        """
        listed = self.listed_since(
            f"/api/pipelines/{segment(params.pipeline_id)}/jobs",
            since,
            pages=range(LIST_MAX_PAGES),
            query=lambda page: {"page": page, "size": LIST_PAGE_SIZE, "sort": "created,desc"},
            read_page=_listing,
            created_key="created",
            page_size=LIST_PAGE_SIZE,
        )
        if listed is None:
            return None  # the pipeline is gone or closed to us
        candidates = [
            (created, job.id, job)
            for created, item in listed
            if (job := _parse_or_none(item)) is not None
            and (job.type or "PIPELINE_RUN") == "PIPELINE_RUN"
        ]
        job = earliest_unclaimed(self.name, candidates, exclude)
        if job is None:
            job = self._latest_job(params, since, exclude)
        if job is None:
            return None
        return CreatedJob(
            remote_job_id=job.id,
            locator={"pipeline_id": params.pipeline_id},
            report=map_status(job),
        )

    def _latest_job(
        self, params: MatatikaParams, since: datetime, exclude: Collection[str]
    ) -> MatatikaJob | None:
        """The pipeline's latest job when the lists may have hidden it: they are documented
        as "running or completed" jobs, so a job still QUEUED may be missing from them, but
        a pipeline's view embeds its latest job whatever its status. Without this look, an
        ambiguous create whose job is still queued would be created again (and only the
        assumed 409 on a busy pipeline would keep a second job from being made).
        """
        response = self.send(
            "GET", f"/api/pipelines/{segment(params.pipeline_id)}", idempotent=True
        )
        if response.status_code in (403, 404):
            return None
        if response.status_code != 200:
            raise self.listing_error(response)
        payload = self.body(response)
        embedded = payload.get("_embedded") if isinstance(payload, dict) else None
        latest = (
            _parse_or_none(embedded.get(LATEST_JOB_KEY)) if isinstance(embedded, dict) else None
        )
        if latest is None or latest.id in exclude:
            return None
        created = aware_time(latest.created)
        if created is None or created < since or (latest.type or "PIPELINE_RUN") != "PIPELINE_RUN":
            return None
        return latest

    def get_status(self, job: JobRef) -> StatusReport:
        response = self.send("GET", f"/api/jobs/{segment(job.remote_job_id)}", idempotent=True)
        self.ensure_found(response, job)
        if response.status_code != 200:
            raise self.tracking_failure(response)
        parsed = _parse(self.body(response))
        # An ERROR's message and detail come from the job's logs (the detail fields are gone).
        tail = self.log_tail(job) if parsed.status.upper() == "ERROR" else None
        return map_status(
            parsed, datetime.now(UTC), retry_grace_seconds=self.retry_grace_seconds, log_tail=tail
        )

    def log_tail(self, job: JobRef) -> list[str]:
        """The last lines of the job's logs, bounded; best effort (a failure loses only logs)."""
        try:
            response = self.send(
                "GET",
                f"/api/jobs/{segment(job.remote_job_id)}/logs",
                idempotent=True,
                params={"sequence": 0},
            )
        except (ProviderUnavailable, httpx.HTTPError) as exc:
            logger.warning("matatika logs unavailable", error=type(exc).__name__)
            return []
        if response.status_code != 200:
            return []
        text = response.text[-LOG_TAIL_BYTES:]
        return [line for line in text.splitlines() if line.strip()][-LOG_TAIL_LINES:]

    def cancel(self, job: JobRef) -> bool:
        """Stop a running job (`PUT .../stopped`), delete a queued one (which also stops it)."""
        path = f"/api/jobs/{segment(job.remote_job_id)}"
        response = self.send("PUT", f"{path}/stopped", idempotent=True)
        if response.status_code in (200, 202, 204):
            return True
        if response.status_code in (400, 409):
            # Not running: still queued (delete it) or already ended (nothing to stop).
            current = self.get_status(job)
            if current.status is JobStatus.QUEUED:
                deleted = self.send("DELETE", path, idempotent=True)
                return deleted.status_code in (200, 202, 204)
            return False
        if response.status_code in (404, 410):
            return False
        raise self.unexpected(response)


def _listing(payload: Any) -> tuple[list[dict[str, Any]], bool]:
    """(jobs, is the last page) of a HAL collection; Spring leaves `_embedded` out when the
    page is empty."""
    # Without `_embedded` and without `page`, the body is not a (possibly empty) collection.
    if not isinstance(payload, dict) or not ({"_embedded", "page"} & payload.keys()):
        raise ProviderProtocolError("matatika answered a job listing we cannot read")
    embedded = payload.get("_embedded") or {}
    items = embedded.get("jobs", []) if isinstance(embedded, dict) else None
    if not isinstance(items, list):
        raise ProviderProtocolError("matatika answered a job listing we cannot read")
    page = payload.get("page")
    last_page = True
    if isinstance(page, dict):
        try:
            last_page = int(page.get("number", 0)) + 1 >= int(page.get("totalPages", 0))
        except (TypeError, ValueError):
            last_page = True
    return [item for item in items if isinstance(item, dict)], last_page


def _parse_or_none(payload: Any) -> MatatikaJob | None:
    try:
        return MatatikaJob.model_validate(payload)
    except ValidationError:
        return None


def _parse(payload: Any) -> MatatikaJob:
    try:
        return MatatikaJob.model_validate(payload)
    except ValidationError as exc:
        raise ProviderProtocolError(f"matatika answered a job we cannot read: {exc}") from exc

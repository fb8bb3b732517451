"""Matatika emulator: pipeline jobs as HAL resources, one job at a time per pipeline, with logs,
retries (`attempt` of `maxAttempts`) and lists that can hide queued jobs."""

from __future__ import annotations

import json
import re
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from .jobs import ACTIVE_PHASES, Behaviour, EmulatedJob, JobState, JsonObject, Phase, iso
from .routes import Request, Response, Route, page_count
from .server import DEFAULT_API_KEY, EmulatorServer
from .tenants import DEFAULT_TENANT

_ID = r"(?P<job_id>[^/]+)"
_STATUS_BY_PHASE: dict[Phase, str] = {
    "queued": "QUEUED",
    "running": "RUNNING",
    "succeeded": "COMPLETE",
    "failed": "ERROR",
    "stopped": "STOPPED",
}
_DEFAULT_PAGE_SIZE = 20  # Spring Data's default
_MAX_PAGE_SIZE = 2000  # Spring Data's default cap
_HAL = "application/hal+json"
_NDJSON_TYPES = ("application/x-ndjson", "application/stream+json")
_TOKEN_TTL_SECONDS = 7200  # machine tokens last about 2 hours
# Exit codes (assumed): a stopped Meltano process ends on SIGTERM, 128 + 15.
_EXIT_OK, _EXIT_ERROR, _EXIT_STOPPED = 0, 1, 143

DEFAULT_WORKSPACE_ID = "00000000-0000-4000-8000-00000000a11a"
DEFAULT_CLIENT_ID = "local-client"
DEFAULT_CLIENT_SECRET = "local-secret"  # noqa: S105 - a fixed credential of the local emulator

_RUN_LOG = (
    "meltano run tap-emulator target-emulator",
    "tap-emulator | Beginning full_table sync of 'orders'",
    "tap-emulator | Synced 1000 records from 'orders'",
    "tap-emulator | Beginning full_table sync of 'customers'",
    "tap-emulator | Synced 250 records from 'customers'",
    "target-emulator | Loaded 1250 records into 2 tables",
    "dbt | Running 4 models",
    "dbt | Completed 4 models",
)


class MatatikaEmulator(EmulatorServer):
    """Matatika: create, view, list, stop and delete pipeline jobs, and read their logs.

    Targets are pipeline ids; `Behaviour.workspace_id` places a pipeline in a workspace
    (default `DEFAULT_WORKSPACE_ID`). Also answers the OAuth client-credentials exchange
    at `POST /oauth/token` so the token path can be tested against loopback: each client
    (`add_client`) gets tokens of its own tenant.
    """

    provider = "matatika"
    status_by_phase = _STATUS_BY_PHASE
    takes_oauth_clients = True

    def __init__(
        self,
        *,
        api_key: str | None = DEFAULT_API_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        defaults: Behaviour | None = None,
        strict_targets: bool = False,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        super().__init__(
            api_key=api_key,
            host=host,
            port=port,
            defaults=defaults,
            strict_targets=strict_targets,
        )

    def routes(self) -> list[Route]:
        pipeline_jobs = re.compile(r"/api/pipelines/(?P<target>[^/]+)/jobs")
        return [
            Route("GET", re.compile(r"/api/pipelines/(?P<target>[^/]+)"), self._pipeline),
            Route("POST", pipeline_jobs, self._create, creates=True),
            Route("GET", pipeline_jobs, self._list_pipeline),
            Route(
                "GET", re.compile(r"/api/workspaces/(?P<workspace_id>[^/]+)/jobs"), self._list_ws
            ),
            Route("GET", re.compile(rf"/api/jobs/{_ID}"), self._get),
            Route("DELETE", re.compile(rf"/api/jobs/{_ID}"), self._delete),
            Route("GET", re.compile(rf"/api/jobs/{_ID}/logs"), self._logs),
            Route("PUT", re.compile(rf"/api/jobs/{_ID}/stopped"), self._stop),
            # (assumed) the real exchange lives on identity.matatika.com; served here so the
            # adapter's token refresh can run against loopback.
            Route("POST", re.compile(r"/oauth/token"), self._token, auth=False),
        ]

    def error(self, status: int, message: str, request: Request) -> Response:
        # Spring Boot's error attributes; `errors` carries field errors when there are any.
        body = {
            "timestamp": iso(time.time()),
            "status": status,
            "error": HTTPStatus(status).phrase,
            "message": message,
            "path": request.path,
            "errors": [],
        }
        return Response.json(status, body)

    # -- handlers ---------------------------------------------------------------------------

    def _create(self, request: Request) -> Response:
        pipeline_id = request.params["target"]
        if not self.target_exists(pipeline_id):
            return self.error(HTTPStatus.NOT_FOUND, f"Pipeline {pipeline_id} not found", request)
        now = self.now()
        for job in self.live_jobs(request):
            state = job.state(now)
            # A job whose retry Matatika has queued still holds the pipeline.
            if job.target == pipeline_id and (state.phase in ACTIVE_PHASES or state.retrying):
                # (assumed) the docs say only one job may run per pipeline, not how a
                # second one is refused.
                message = f"Pipeline {pipeline_id} already has a job in progress ({job.id})"
                return self.error(HTTPStatus.CONFLICT, message, request)
        job = self.new_job(pipeline_id, {}, tenant=request.tenant)
        body = self._job_json(job, job.state(now), _task_details(request))
        location = {"Location": self._href(f"/api/jobs/{job.id}")}
        return Response.json(HTTPStatus.CREATED, body, location, _HAL)

    def _get(self, request: Request) -> Response:
        job = self.find_job(request.params["job_id"], request)
        if job is None:
            return self._job_not_found(request)
        body = self._job_json(job, job.state(self.now()), _task_details(request))
        return Response.json(HTTPStatus.OK, body, content_type=_HAL)

    def _pipeline(self, request: Request) -> Response:
        """The pipeline, with its latest job embedded (`_embedded.'latest job'`, Matatika's
        pipelines page) whatever that job's status: a queued job the lists hide shows here."""
        pipeline_id = request.params["target"]
        if not self.target_exists(pipeline_id):
            return self.error(HTTPStatus.NOT_FOUND, f"Pipeline {pipeline_id} not found", request)
        behaviour = self.behaviour_for(pipeline_id)
        jobs = [job for job in self.live_jobs(request) if job.target == pipeline_id]
        body: JsonObject = {
            "id": pipeline_id,
            "status": "READY",
            "name": behaviour.name or f"pipeline {pipeline_id}",
            "timeout": 0,  # 0: Matatika's implicit 300 s
            "maxRetries": max(0, behaviour.max_attempts - 1),
            "_links": {"self": {"href": self._href(request.path)}},
        }
        if jobs:
            latest = max(jobs, key=lambda job: job.order)
            view = self._job_json(latest, latest.state(self.now()), _task_details(request))
            body["_embedded"] = {"latest job": view}
        return Response.json(HTTPStatus.OK, body, content_type=_HAL)

    def _list_pipeline(self, request: Request) -> Response:
        pipeline_id = request.params["target"]
        if not self.target_exists(pipeline_id):
            return self.error(HTTPStatus.NOT_FOUND, f"Pipeline {pipeline_id} not found", request)
        jobs = [job for job in self._listed(request) if job.target == pipeline_id]
        return self._collection(request, jobs)

    def _list_ws(self, request: Request) -> Response:
        workspace_id = request.params["workspace_id"]
        jobs = [job for job in self._listed(request) if self._workspace_of(job) == workspace_id]
        return self._collection(request, jobs)

    def _listed(self, request: Request) -> list[EmulatedJob]:
        """The jobs the lists show the request's tenant: documented as "running or
        completed" jobs, so a queued job is left out where its behaviour says
        `listed_while_queued=False`."""
        now = self.now()
        return [
            job
            for job in self.live_jobs(request)
            if job.behaviour.listed_while_queued or job.state(now).phase != "queued"
        ]

    def _stop(self, request: Request) -> Response:
        job = self.find_job(request.params["job_id"], request)
        if job is None:
            return self._job_not_found(request)
        now = self.now()
        state = job.state(now)
        if state.phase != "running":
            status = self.status_by_phase[state.phase]
            message = f"Job {job.id} is {status}; only a RUNNING job can be stopped"
            return self.error(HTTPStatus.CONFLICT, message, request)
        job.stopped_mono = now
        body = self._job_json(job, job.state(now), _task_details(request))
        return Response.json(HTTPStatus.ACCEPTED, body, content_type=_HAL)

    def _delete(self, request: Request) -> Response:
        job = self.find_job(request.params["job_id"], request)
        if job is None:
            return self._job_not_found(request)
        now = self.now()
        if job.state(now).phase in ACTIVE_PHASES:
            job.stopped_mono = now
        job.deleted = True
        return Response.no_content()

    def _logs(self, request: Request) -> Response:
        job = self.find_job(request.params["job_id"], request)
        if job is None:
            return self._job_not_found(request)
        raw_sequence = request.arg("sequence") or "0"
        try:
            sequence = int(raw_sequence)
        except ValueError:
            message = f"Failed to convert value of type 'java.lang.String' to required type 'int'; For input string: \"{raw_sequence}\""
            return self.error(HTTPStatus.BAD_REQUEST, message, request)
        lines = [line for line in _log_lines(job, job.state(self.now())) if line[0] > sequence]
        if not lines:
            return Response.no_content()
        accept = request.header("Accept") or ""
        # (assumed) line shapes: the docs name the formats, not their fields.
        ndjson = next((kind for kind in _NDJSON_TYPES if kind in accept), None)
        if ndjson is not None:
            text = "".join(
                json.dumps({"sequence": n, "timestamp": iso(at), "message": msg}) + "\n"
                for n, at, msg in lines
            )
            return Response(HTTPStatus.OK, text.encode(), ndjson)
        text = "".join(f"{iso(at)} {msg}\n" for _, at, msg in lines)
        return Response(HTTPStatus.OK, text.encode(), "text/plain;charset=UTF-8")

    def _token(self, request: Request) -> Response:
        """The client-credentials exchange: the default client gets the default tenant's
        key as its token (or, accepting any key, a fresh one); a client added with
        `add_client` gets a fresh token of its own tenant, valid `_TOKEN_TTL_SECONDS`."""
        fields = _form_or_json(request)
        client_id, client_secret = fields.get("client_id"), fields.get("client_secret")
        default = client_id == self.client_id and client_secret == self.client_secret
        tenant = (
            DEFAULT_TENANT if default else self._tenants.client_tenant(client_id, client_secret)
        )
        if fields.get("grant_type") != "client_credentials" or tenant is None:
            denied = {"error": "access_denied", "error_description": "Unauthorized"}
            return Response.json(HTTPStatus.UNAUTHORIZED, denied)
        if tenant == DEFAULT_TENANT and self.api_key is not None:
            token = self.api_key
        else:
            token = self._tenants.issue_token(tenant, _TOKEN_TTL_SECONDS, time.monotonic())
        body: JsonObject = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": _TOKEN_TTL_SECONDS,
        }
        return Response.json(HTTPStatus.OK, body)

    # -- views ------------------------------------------------------------------------------

    def render(self, job: EmulatedJob, state: JobState) -> JsonObject:
        return self._job_json(job, state, task_details=True)

    def _job_json(self, job: EmulatedJob, state: JobState, task_details: bool) -> JsonObject:
        exit_code = {"succeeded": _EXIT_OK, "failed": _EXIT_ERROR, "stopped": _EXIT_STOPPED}
        details: JsonObject = {
            "taskName": "pipeline-run",
            "exitMessage": None,
            "arguments": ["run", "tap-emulator", "target-emulator"],
            "errorMessage": None,
        }
        if state.phase == "failed":
            details["exitMessage"] = "Pipeline run failed"
            details["errorMessage"] = "tap-emulator | Extractor failed: connection reset by peer"
        elif state.phase == "stopped":
            details["exitMessage"] = "Job stopped"
        elif state.phase == "succeeded":
            details["exitMessage"] = "Pipeline run completed"
        return {
            "id": job.id,
            "created": iso(job.created_wall),
            "type": "PIPELINE_RUN",
            "status": self.provider_status(job, state),
            # (assumed) a retry runs as the same job with the next attempt number.
            "attempt": state.attempt,
            "maxAttempts": max(1, job.behaviour.max_attempts),
            "exitCode": exit_code.get(state.phase),
            "startTime": iso(state.started_at) if state.started_at is not None else None,
            "endTime": iso(state.ended_at) if state.ended_at is not None else None,
            # Null unless the request sends `enable-task-details: true`, as Matatika's Job page
            # said until 2021, when the header and these fields left its docs.
            **(details if task_details else dict.fromkeys(details)),
            "_links": {
                "self": {"href": self._href(f"/api/jobs/{job.id}")},
                "logs": {"href": self._href(f"/api/jobs/{job.id}/logs")},
                "pipeline": {"href": self._href(f"/api/pipelines/{job.target}")},
            },
        }

    def _collection(self, request: Request, jobs: list[EmulatedJob]) -> Response:
        page = max(0, _int_or(request.arg("page"), 0))
        size = min(_MAX_PAGE_SIZE, max(1, _int_or(request.arg("size"), _DEFAULT_PAGE_SIZE)))
        newest_first = (request.arg("sort") or "created,desc").lower() != "created,asc"
        ordered = sorted(jobs, key=lambda job: job.order, reverse=newest_first)
        now = self.now()
        chosen = ordered[page * size : (page + 1) * size]
        views = [self._job_json(job, job.state(now), _task_details(request)) for job in chosen]
        total_pages = page_count(len(ordered), size)
        links: JsonObject = {"self": {"href": self._href(request.path)}}
        if page + 1 < total_pages:
            links["next"] = {"href": self._href(f"{request.path}?page={page + 1}&size={size}")}
        body: JsonObject = {}
        # Spring HATEOAS leaves `_embedded` out entirely when the page is empty.
        if views:
            body["_embedded"] = {"jobs": views}
        body["_links"] = links
        body["page"] = {
            "size": size,
            "totalElements": len(ordered),
            "totalPages": total_pages,
            "number": page,
        }
        return Response.json(HTTPStatus.OK, body, content_type=_HAL)

    def _job_not_found(self, request: Request) -> Response:
        return self.error(
            HTTPStatus.NOT_FOUND, f"Job {request.params['job_id']} not found", request
        )

    def _workspace_of(self, job: EmulatedJob) -> str:
        return job.behaviour.workspace_id or DEFAULT_WORKSPACE_ID

    def _href(self, path: str) -> str:
        return f"{self.url}{path}"


def _log_lines(job: EmulatedJob, state: JobState) -> list[tuple[int, float, str]]:
    """(sequence, time, message) lines written so far; they appear as the run progresses."""
    if state.started_at is None:
        return []
    step = job.behaviour.duration / len(_RUN_LOG)
    visible = 1 + int(state.progress * (len(_RUN_LOG) - 1) + 1e-9)
    messages = [(state.started_at, f"Starting job {job.id} of pipeline {job.target}")]
    messages += [
        (state.started_at + index * step, line) for index, line in enumerate(_RUN_LOG[:visible])
    ]
    end = state.ended_at or state.updated_at
    if state.phase == "failed":
        messages += [
            (end, "tap-emulator | ERROR Extractor failed: connection reset by peer"),
            (end, f"Job failed with exit code {_EXIT_ERROR}"),
        ]
    elif state.phase == "stopped":
        messages.append((end, "Job stopped"))
    elif state.phase == "succeeded":
        messages.append((end, "Job completed"))
    return [(number, at, message) for number, (at, message) in enumerate(messages, start=1)]


def _task_details(request: Request) -> bool:
    return (request.header("enable-task-details") or "").strip().lower() == "true"


def _int_or(raw: str | None, default: int) -> int:
    # Spring falls back to the default page and size when the value does not parse.
    try:
        return int(raw) if raw is not None else default
    except ValueError:
        return default


def _form_or_json(request: Request) -> dict[str, Any]:
    content_type = request.header("Content-Type") or ""
    if "json" in content_type:
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
    form = parse_qs(request.body.decode(errors="replace"))
    return {name: values[0] for name, values in form.items()}


# -- registry hook: what `jobrelay_local.emulators` and the bench look up by provider name ------

EMULATOR: type[EmulatorServer] = MatatikaEmulator


def sample_params(request_id: str) -> JsonObject:
    """The params of a valid Matatika request, as the bench sends them."""
    # Matatika runs one job per pipeline at a time (409 "busy"): one pipeline per request.
    return {"pipeline_id": f"pipe-{request_id}"}

"""deepset Cloud emulator: the v2 jobs endpoints of a workspace, with FastAPI-style 422s."""

from __future__ import annotations

import math
import re
import uuid
from http import HTTPStatus
from typing import Any

from .jobs import EmulatedJob, JobState, JsonObject, Phase, iso, new_id
from .routes import Request, Response, Route, json_body
from .server import EmulatorServer

_JOBS = r"/api/v2/workspaces/(?P<workspace_id>[^/]+)/jobs"
_EXECUTION_MODES = ("PER_FILE", "ACROSS_FILES")
_STATUS_BY_PHASE: dict[Phase, str] = {
    "queued": "CREATED",
    "running": "STARTED",
    "succeeded": "ENDED",
    "failed": "FAILED",
    # deepset documents no cancel; a stop cannot happen, but keep the mapping total.
    "stopped": "FAILED",
}
_QUERY_FIELDS = (
    "query",
    "filters",
    "params",
    "group_name",
    "query_label",
    "query_index",
    "absolute_query_index",
)
_DEFAULT_CONCURRENCY = 3
_DEFAULT_LIST_LIMIT = 10  # (assumed) the docs give no default page size


class _Errors:
    """Collects pydantic-v2-style validation errors (type, loc, msg, input)."""

    def __init__(self) -> None:
        self.items: list[JsonObject] = []

    def add(self, kind: str, loc: list[str | int], msg: str, value: Any) -> None:
        self.items.append({"type": kind, "loc": loc, "msg": msg, "input": value})

    def uuid(self, value: Any, loc: list[str | int]) -> str | None:
        if not isinstance(value, str):
            self.add("uuid_type", loc, "UUID input should be a string, bytes or UUID object", value)
            return None
        try:
            uuid.UUID(value)
        except ValueError:
            msg = "Input should be a valid UUID, invalid character: expected an optional prefix"
            self.add("uuid_parsing", loc, msg, value)
            return None
        # Kept as sent, so ids match what tests configured with `configure_target`.
        return value

    def string(self, value: Any, loc: list[str | int], *, optional: bool) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str):
            self.add("string_type", loc, "Input should be a valid string", value)
            return None
        return value

    def integer(self, value: Any, loc: list[str | int]) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add("int_type", loc, "Input should be a valid integer", value)
            return None
        if isinstance(value, float) and not value.is_integer():
            msg = "Input should be a valid integer, got a number with a fractional part"
            self.add("int_from_float", loc, msg, value)
            return None
        return int(value)

    def mapping(self, value: Any, loc: list[str | int]) -> JsonObject | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            self.add("dict_type", loc, "Input should be a valid dictionary", value)
            return None
        return value


def validate_create_job(body: Any) -> tuple[JsonObject, list[JsonObject]]:
    """Validate a CreateJob body as deepset's Create Job page says (docs/providers.md,
    "deepset Cloud"); returns (job fields, errors)."""
    errors = _Errors()
    if not isinstance(body, dict):
        msg = "Input should be a valid dictionary or object to extract fields from"
        errors.add("model_attributes_type", ["body"], msg, body)
        return {}, errors.items
    for required in ("name", "pipeline_id", "execution_mode"):
        if required not in body:
            errors.add("missing", ["body", required], "Field required", body)
    fields: JsonObject = {}
    if "name" in body:
        fields["name"] = errors.string(body["name"], ["body", "name"], optional=False)
    if "pipeline_id" in body:
        fields["pipeline_id"] = errors.uuid(body["pipeline_id"], ["body", "pipeline_id"])
    if "execution_mode" in body:
        mode = body["execution_mode"]
        if mode not in _EXECUTION_MODES:
            msg = "Input should be 'PER_FILE' or 'ACROSS_FILES'"
            errors.add("enum", ["body", "execution_mode"], msg, mode)
        fields["execution_mode"] = mode
    fields["queries"] = _validate_queries(body.get("queries"), errors)
    query_set_id = body.get("query_set_id")
    fields["query_set_id"] = (
        None if query_set_id is None else errors.uuid(query_set_id, ["body", "query_set_id"])
    )
    fields["concurrency"] = _validate_concurrency(body.get("concurrency"), errors, body)
    fields["description"] = errors.string(
        body.get("description"), ["body", "description"], optional=True
    )
    return fields, errors.items


def _validate_queries(value: Any, errors: _Errors) -> list[JsonObject] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        errors.add("list_type", ["body", "queries"], "Input should be a valid list", value)
        return None
    queries: list[JsonObject] = []
    for index, item in enumerate(value):
        loc: list[str | int] = ["body", "queries", index]
        if not isinstance(item, dict):
            msg = "Input should be a valid dictionary or object to extract fields from"
            errors.add("model_attributes_type", loc, msg, item)
            continue
        query: JsonObject = dict.fromkeys(_QUERY_FIELDS)
        if "query" in item:
            query["query"] = errors.string(item["query"], [*loc, "query"], optional=False)
        else:
            errors.add("missing", [*loc, "query"], "Field required", item)
        for name in ("filters", "params"):
            query[name] = errors.mapping(item.get(name), [*loc, name])
        for name in ("group_name", "query_label"):
            query[name] = errors.string(item.get(name), [*loc, name], optional=True)
        for name in ("query_index", "absolute_query_index"):
            query[name] = errors.integer(item.get(name), [*loc, name])
        queries.append(query)
    return queries


def _validate_concurrency(value: Any, errors: _Errors, body: JsonObject) -> int | None:
    if "concurrency" not in body:
        return _DEFAULT_CONCURRENCY
    number = errors.integer(value, ["body", "concurrency"])
    if number is None:
        return None
    if number < 1:
        msg = "Input should be greater than or equal to 1"
        errors.add("greater_than_equal", ["body", "concurrency"], msg, value)
    elif number > 20:
        msg = "Input should be less than or equal to 20"
        errors.add("less_than_equal", ["body", "concurrency"], msg, value)
    return number


_BOOL_WORDS = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "t": True,
    "y": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
    "f": False,
    "n": False,
}


class DeepsetEmulator(EmulatorServer):
    """deepset Cloud: `POST/GET /api/v2/workspaces/{workspace_id}/jobs[/{job_id}]`.

    Targets are pipeline ids (the body's `pipeline_id`); `Behaviour.name` is the
    `pipeline_name`, `Behaviour.query_set_size` the requests of a `query_set_id` job.
    """

    provider = "deepset"
    status_by_phase = _STATUS_BY_PHASE

    def routes(self) -> list[Route]:
        return [
            Route("POST", re.compile(_JOBS), self._create, creates=True),
            # (assumed) list and get-one: the public docs only show Create Job.
            Route("GET", re.compile(_JOBS), self._list),
            Route("GET", re.compile(_JOBS + r"/(?P<job_id>[^/]+)"), self._get),
        ]

    def error(self, status: int, message: str, request: Request) -> Response:
        return Response.json(status, {"detail": message})

    def unauthorized(self, request: Request) -> Response:
        message = (
            "Not authenticated" if request.header("Authorization") is None else "Invalid token"
        )
        return Response.json(
            HTTPStatus.UNAUTHORIZED, {"detail": message}, {"WWW-Authenticate": "Bearer"}
        )

    def target_of(self, request: Request) -> str | None:
        if request.method == "POST" and request.body:
            try:
                body = json_body(request)
            except ValueError:
                return None
            pipeline_id = body.get("pipeline_id") if isinstance(body, dict) else None
            return pipeline_id if isinstance(pipeline_id, str) else None
        return super().target_of(request)

    # -- handlers ---------------------------------------------------------------------------

    def _create(self, request: Request) -> Response:
        errors = _Errors()
        workspace_id = errors.uuid(request.params["workspace_id"], ["path", "workspace_id"])
        dry_run = _query_bool(request.arg("dry_run"), ["query", "dry_run"], errors)
        body: Any = None
        if not request.body:
            errors.add("missing", ["body"], "Field required", None)
        else:
            try:
                body = json_body(request)
            except ValueError as exc:
                errors.add("json_invalid", ["body", 0], "JSON decode error", {"error": str(exc)})
        fields: JsonObject = {}
        if body is not None or request.body == b"null":
            fields, body_errors = validate_create_job(body)
            errors.items.extend(body_errors)
        if errors.items:
            return Response.json(HTTPStatus.UNPROCESSABLE_ENTITY, {"detail": errors.items})
        pipeline_id = str(fields["pipeline_id"])
        if not self.target_exists(pipeline_id):
            # (assumed) the docs do not say how an unknown pipeline is refused.
            return self.error(HTTPStatus.NOT_FOUND, "Pipeline not found.", request)
        behaviour = self.behaviour_for(pipeline_id)
        if behaviour.forbidden:
            return self.error(HTTPStatus.FORBIDDEN, "Not allowed to use this pipeline.", request)
        queries = fields["queries"]
        query_set_id = fields["query_set_id"]
        if queries is not None:
            # Sending queries creates a new query set, whatever query_set_id said.
            query_set_id = new_id()
            total = len(queries)
        elif query_set_id is not None:
            total = behaviour.query_set_size
        else:
            total = 0
        data: JsonObject = {
            **fields,
            "workspace_id": workspace_id,
            "query_set_id": query_set_id,
            "total_requests": total,
            "created_by": self._user(request),
        }
        job = self.new_job(pipeline_id, data, store=not dry_run, tenant=request.tenant)
        return Response.json(HTTPStatus.CREATED, self.render(job, job.state(self.now())))

    def _get(self, request: Request) -> Response:
        errors = _Errors()
        workspace_id = errors.uuid(request.params["workspace_id"], ["path", "workspace_id"])
        job_id = errors.uuid(request.params["job_id"], ["path", "job_id"])
        if errors.items:
            return Response.json(HTTPStatus.UNPROCESSABLE_ENTITY, {"detail": errors.items})
        job = self.find_job(str(job_id), request)
        if job is None or job.data["workspace_id"] != workspace_id:
            return self.error(HTTPStatus.NOT_FOUND, "Job not found.", request)
        return Response.json(HTTPStatus.OK, self.render(job, job.state(self.now())))

    def _list(self, request: Request) -> Response:
        errors = _Errors()
        workspace_id = errors.uuid(request.params["workspace_id"], ["path", "workspace_id"])
        limit = _query_int(request.arg("limit"), _DEFAULT_LIST_LIMIT, ["query", "limit"], errors)
        page = _query_int(request.arg("page_number"), 1, ["query", "page_number"], errors)
        if errors.items:
            return Response.json(HTTPStatus.UNPROCESSABLE_ENTITY, {"detail": errors.items})
        jobs = sorted(
            (job for job in self.live_jobs(request) if job.data["workspace_id"] == workspace_id),
            key=lambda job: job.order,
            reverse=True,
        )
        start = (page - 1) * limit
        now = self.now()
        data = [self.render(job, job.state(now)) for job in jobs[start : start + limit]]
        body = {"data": data, "has_more": start + limit < len(jobs), "total": len(jobs)}
        return Response.json(HTTPStatus.OK, body)

    # -- views ------------------------------------------------------------------------------

    def render(self, job: EmulatedJob, state: JobState) -> JsonObject:
        data = job.data
        total: int = data["total_requests"]
        executed = math.floor(state.progress * total + 1e-9)
        duration = None
        if state.ended_at is not None and state.started_at is not None:
            duration = round(state.ended_at - state.started_at, 3)
        return {
            "job_id": job.id,
            "name": data["name"],
            "pipeline_id": data["pipeline_id"],
            "pipeline_name": job.behaviour.name or f"pipeline-{job.target[:8]}",
            "execution_mode": data["execution_mode"],
            "status": self.provider_status(job, state),
            "created_at": iso(job.created_wall),
            "created_by": data["created_by"],
            "concurrency": data["concurrency"],
            "description": data["description"],
            "duration": duration,
            "executed_at": iso(state.started_at) if state.started_at is not None else None,
            "executed_requests": executed,
            "total_requests": total,
            "last_edited_at": None,
            "last_edited_by": None,
            "queries": data["queries"],
            "query_set_id": data["query_set_id"],
        }

    def _user(self, request: Request) -> JsonObject:
        user_id = self.caller_id(request)
        return {"user_id": user_id, "given_name": "Local", "family_name": "Emulator"}


def _query_bool(raw: str | None, loc: list[str | int], errors: _Errors) -> bool:
    if raw is None:
        return False
    value = _BOOL_WORDS.get(raw.strip().lower())
    if value is None:
        errors.add(
            "bool_parsing", loc, "Input should be a valid boolean, unable to interpret input", raw
        )
        return False
    return value


def _query_int(raw: str | None, default: int, loc: list[str | int], errors: _Errors) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        msg = "Input should be a valid integer, unable to parse string as an integer"
        errors.add("int_parsing", loc, msg, raw)
        return default
    if value < 1:
        errors.add("greater_than_equal", loc, "Input should be greater than or equal to 1", raw)
    return value


# -- registry hook: what `jobrelay_local.emulators` and the bench look up by provider name ------

EMULATOR: type[EmulatorServer] = DeepsetEmulator

_SAMPLE_WORKSPACE_ID = "0b6e2c1e-5f1a-4c1e-9a47-1d2b3c4d5e6f"
_SAMPLE_PIPELINE_ID = "7d7b2a3c-1e2f-4a5b-8c9d-0e1f2a3b4c5d"


def sample_params(request_id: str) -> JsonObject:
    """The params of a valid deepset request, as the bench sends them."""
    return {
        "workspace_id": _SAMPLE_WORKSPACE_ID,
        "name": "bench",
        "pipeline_id": _SAMPLE_PIPELINE_ID,
        "execution_mode": "ACROSS_FILES",
        "queries": [{"query": "q1"}, {"query": "q2"}],
    }

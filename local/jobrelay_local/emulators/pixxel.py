"""Pixxel emulator: jobs of a workflow under `/v0/workflows/{workflow_id}/jobs`, each a task DAG."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from .jobs import EmulatedJob, JobState, JsonObject, Phase, iso
from .routes import Request, Response, Route
from .server import EmulatorServer

_JOBS = r"/v0/workflows/(?P<target>[^/]+)/jobs"
_STATUS_BY_PHASE: dict[Phase, str] = {
    # Pixxel documents running, completed and failed only; a queued job already says running.
    "queued": "running",
    "running": "running",
    "succeeded": "completed",
    "failed": "failed",
    "stopped": "failed",
}
_ERROR_CODES = {
    HTTPStatus.BAD_REQUEST: "bad_request",
    HTTPStatus.UNAUTHORIZED: "unauthenticated",
    HTTPStatus.FORBIDDEN: "forbidden",
    HTTPStatus.NOT_FOUND: "not_found",
    HTTPStatus.METHOD_NOT_ALLOWED: "method_not_allowed",
    HTTPStatus.TOO_MANY_REQUESTS: "rate_limited",
}
_CREDITS_PER_TASK = 5


@dataclass(frozen=True)
class _Block:
    task: str
    block_id: str
    block_name: str
    version: str


_PIPELINE = (
    _Block("read-input", "blk-reader", "scene-reader", "1.2.0"),
    _Block("process", "blk-band-math", "band-math", "2.0.1"),
    _Block("write-output", "blk-writer", "cog-writer", "1.0.3"),
)


class PixxelEmulator(EmulatorServer):
    """Pixxel: create, get and list jobs of a workflow.

    Targets are workflow ids. `Behaviour.invalid` makes creates answer 200 with
    `val_errors` and status `failed`; `forbidden` or a `project_id` other than the one
    sent answers 403; `exists=False` answers 404.
    """

    provider = "pixxel"
    status_by_phase = _STATUS_BY_PHASE

    def routes(self) -> list[Route]:
        return [
            Route("POST", re.compile(_JOBS), self._create, creates=True),
            Route("GET", re.compile(_JOBS), self._list),
            Route("GET", re.compile(_JOBS + r"/(?P<job_id>[^/]+)"), self._get),
        ]

    def error(self, status: int, message: str, request: Request, details: Any = None) -> Response:
        code = _ERROR_CODES.get(
            HTTPStatus(status), HTTPStatus(status).phrase.lower().replace(" ", "_")
        )
        return Response.json(
            status, {"error": {"code": code, "message": message, "details": details}}
        )

    def credential(self, request: Request) -> str | None:
        # The docs show the raw key (`Authorization: <key>`); `Bearer <key>` is accepted too.
        header = (request.header("Authorization") or "").strip()
        scheme, _, rest = header.partition(" ")
        return rest.strip() if scheme.lower() == "bearer" and rest else header

    def unauthorized(self, request: Request) -> Response:
        return self.error(HTTPStatus.FORBIDDEN, "missing or invalid API key", request)

    # -- handlers ---------------------------------------------------------------------------

    def _create(self, request: Request) -> Response:
        project_id = request.arg("project_id")
        if not project_id:
            details = {"param": "project_id", "reason": "required"}
            return self.error(HTTPStatus.BAD_REQUEST, "project_id is required", request, details)
        workflow_id = request.params["target"]
        refused = self._refuse_workflow(workflow_id, request, project_id)
        if refused is not None:
            return refused
        data = {"project_id": project_id, "created_by": self.caller_id(request)}
        job = self.new_job(workflow_id, data, tenant=request.tenant)
        job.rejected = job.behaviour.invalid
        return Response.json(HTTPStatus.OK, self.render(job, job.state(self.now())))

    def _get(self, request: Request) -> Response:
        workflow_id = request.params["target"]
        refused = self._refuse_workflow(workflow_id, request, request.arg("project_id"))
        if refused is not None:
            return refused
        job = self.find_job(request.params["job_id"], request)
        if job is None or job.target != workflow_id:
            return self.error(HTTPStatus.NOT_FOUND, "job not found", request)
        return Response.json(HTTPStatus.OK, self.render(job, job.state(self.now())))

    def _list(self, request: Request) -> Response:
        workflow_id = request.params["target"]
        refused = self._refuse_workflow(workflow_id, request, request.arg("project_id"))
        if refused is not None:
            return refused
        now = self.now()
        views = [
            _list_item(self.render(job, job.state(now)))
            for job in sorted(self.live_jobs(request), key=lambda job: job.order, reverse=True)
            if job.target == workflow_id
        ]
        wanted = {
            name: request.arg(name)
            for name in ("id", "status", "created_by", "created_on")
            if request.arg(name)
        }
        return Response.json(HTTPStatus.OK, {"jobs": [v for v in views if _keep(v, wanted)]})

    def _refuse_workflow(
        self, workflow_id: str, request: Request, project_id: str | None
    ) -> Response | None:
        if not self.target_exists(workflow_id):
            return self.error(HTTPStatus.NOT_FOUND, f"workflow {workflow_id} not found", request)
        behaviour = self.behaviour_for(workflow_id)
        wrong_project = project_id is not None and behaviour.project_id not in (None, project_id)
        if behaviour.forbidden or wrong_project:
            message = f"no permission to use workflow {workflow_id} in this project"
            return self.error(HTTPStatus.FORBIDDEN, message, request)
        return None

    # -- views ------------------------------------------------------------------------------

    def render(self, job: EmulatedJob, state: JobState) -> JsonObject:
        behaviour = job.behaviour
        finished = state.ended_at if state.phase not in ("queued", "running") else None
        time_taken = (finished or state.updated_at) - (state.started_at or job.created_wall)
        spec = {"workflow_id": job.target, "blocks": [block.block_name for block in _PIPELINE]}
        return {
            "id": job.id,
            "workflow_id": job.target,
            "status": self.provider_status(job, state),
            "progress": f"{round(state.progress * 100)}%",
            "cost": _CREDITS_PER_TASK * len(_PIPELINE),
            "estimated_duration": max(1, round(behaviour.queued + behaviour.duration)),
            "time_taken": _go_duration(time_taken),
            "created_at": iso(job.created_wall),
            "updated_at": iso(state.updated_at),
            "finished_at": iso(finished) if finished is not None else None,
            "exec_created_at": iso(state.started_at) if state.started_at is not None else None,
            "exec_updated_at": iso(state.updated_at) if state.started_at is not None else None,
            "created_by": job.data["created_by"],
            # The API returns the workflow spec as raw bytes, i.e. a list of integers.
            "spec": list(json.dumps(spec).encode()),
            "val_errors": _validation_errors() if job.rejected else [],
            "tasks": [] if job.rejected else _tasks(job, state),
        }


# A listed job is lighter than the job's own GET: no `tasks`, no `val_errors`, no `spec`
# (Pixxel's List Jobs page; docs/providers.md, "Pixxel").
_LIST_FIELDS = (
    "id",
    "status",
    "progress",
    "cost",
    "created_by",
    "workflow_id",
    "created_at",
    "updated_at",
    "finished_at",
    "estimated_duration",
    "time_taken",
)


def _list_item(view: JsonObject) -> JsonObject:
    return {name: view[name] for name in _LIST_FIELDS}


def _tasks(job: EmulatedJob, state: JobState) -> list[JsonObject]:
    """The DAG's tasks; task i runs while the job's progress is in [i/3, (i+1)/3), and on
    failure the task the progress stopped in fails (the middle one by default)."""
    count = len(_PIPELINE)
    failing = min(int(state.progress * count), count - 1)
    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"{job.id}/{b.task}")) for b in _PIPELINE]
    started = state.started_at
    span = job.behaviour.duration / count
    tasks: list[JsonObject] = []
    for index, block in enumerate(_PIPELINE):
        share = min(max(state.progress * count - index, 0.0), 1.0)
        status, state_msg, err_msg, failure_type = _task_status(state, index, share, failing)
        task_start = started + index * span if started is not None and status != "pending" else None
        task_end = None
        if status in ("completed", "failed") and task_start is not None:
            task_end = min(task_start + span, state.updated_at)
        tasks.append(
            {
                "id": ids[index],
                "name": block.task,
                "status": status,
                "state_msg": state_msg,
                "progress": round(share * 100, 1),
                "depends_on": ids[index - 1 : index] if index else [],
                "block_info": {
                    "id": block.block_id,
                    "name": block.block_name,
                    "version": block.version,
                },
                "err_msg": err_msg,
                "failure_type": failure_type,
                "created_at": iso(job.created_wall),
                "updated_at": iso(task_end or state.updated_at),
                "finished_at": iso(task_end) if task_end is not None else None,
                "estimated_time_duration": max(1, round(span)),
                "time_taken": _go_duration((task_end or state.updated_at) - task_start)
                if task_start is not None
                else "",
                "recv_time": iso(task_start) if task_start is not None else None,
                "send_time": iso(task_end) if task_end is not None else None,
                "block_inf_start_time": iso(task_start) if task_start is not None else None,
                "block_inf_end_time": iso(task_end) if task_end is not None else None,
                "info_logs": [],
                "inputs": [],
                "result": [],
                "disclaimer": [],
            }
        )
    return tasks


def _task_status(
    state: JobState, index: int, share: float, failing: int
) -> tuple[str, str, str, str]:
    """(status, state_msg, err_msg, failure_type) of task `index`."""
    if state.phase == "succeeded":
        return "completed", "done", "", ""
    if state.phase in ("failed", "stopped"):
        if index < failing:
            return "completed", "done", "", ""
        if index == failing:
            err = "band-math: exit status 1: input scene has no valid pixels in the requested AOI"
            return "failed", "block execution failed", err, "BLOCK_EXECUTION_FAILED"
        return "skipped", "upstream task failed", "", ""
    if state.phase == "queued" or (share <= 0.0 and index > 0):
        return "pending", "waiting for dependencies", "", ""
    if share >= 1.0:
        return "completed", "done", "", ""
    return "running", "processing", "", ""


def _validation_errors() -> list[JsonObject]:
    return [
        {
            "from": _PIPELINE[0].task,
            "to": _PIPELINE[1].task,
            "err": "incompatible_ports",
            "reason": "output 'scene' of scene-reader does not match input 'raster' of band-math",
            "component_name": _PIPELINE[1].block_name,
        }
    ]


def _keep(view: JsonObject, wanted: dict[str, str | None]) -> bool:
    for name, value in wanted.items():
        if name == "created_on":
            if not str(view["created_at"]).startswith(str(value)):
                return False
        elif str(view[name]) != value:
            return False
    return True


def _go_duration(seconds: float) -> str:
    """Human-readable like Go's time.Duration (`1m2.5s`), which the field appears to use."""
    seconds = max(0.0, seconds)
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


# -- registry hook: what `jobrelay_local.emulators` and the bench look up by provider name ------

EMULATOR: type[EmulatorServer] = PixxelEmulator


def sample_params(request_id: str) -> JsonObject:
    """The params of a valid Pixxel request, as the bench sends them."""
    return {"workflow_id": "wf-bench", "project_id": "proj-bench"}

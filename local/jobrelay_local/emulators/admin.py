"""The emulators' admin API: what a test or the demo scripts (behaviour, faults, next jobs,
tenants) and reads (jobs, creates, the request log, each tenant's jobs), in Python and over
HTTP under `/_admin`."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, replace
from http import HTTPStatus
from typing import Any, ClassVar

from .faults import Fault
from .jobs import (
    AdminError,
    Behaviour,
    EmulatedJob,
    JobState,
    JsonObject,
    check_behaviour_fields,
    iso,
)
from .routes import Request, Response
from .tenants import DEFAULT_TENANT, TenantBook, tenant_stats

# How many received requests the log keeps; a long demo must not grow memory without bound.
_REQUEST_LOG_LIMIT = 10_000


class EmulatorAdmin:
    """The scripted state of an emulator and the API over it; `EmulatorServer` serves it.

    Every method takes the emulator's lock, so a script never sees a half-made change.
    """

    # Set by EmulatorServer (server.py); the provider subclass renders its jobs.
    provider: ClassVar[str]
    _lock: threading.RLock
    _initial_defaults: Behaviour
    _initial_strict: bool
    _job_listeners: list[Callable[[EmulatedJob], None]]

    _defaults: Behaviour
    _strict_targets: bool
    _targets: dict[str, JsonObject]
    _next_jobs: list[tuple[str | None, JsonObject]]
    _faults: list[Fault]
    _jobs: dict[str, EmulatedJob]
    _creates: Counter[str]
    _request_log: deque[JsonObject]
    api_key: str | None
    _tenants: TenantBook
    # Authenticated calls per tenant ("" counts the refused ones).
    _tenant_calls: Counter[str]
    # Whether the provider exchanges OAuth client credentials for tokens (`add_client`).
    takes_oauth_clients: ClassVar[bool] = False

    @property
    def url(self) -> str:
        raise NotImplementedError

    def render(self, job: EmulatedJob, state: JobState) -> JsonObject:
        raise NotImplementedError

    def provider_status(self, job: EmulatedJob, state: JobState) -> str:
        raise NotImplementedError

    # -- Python API: configuration ----------------------------------------------------------

    def configure(self, **changes: Any) -> None:
        """Change the default behaviour of every target (fields of `Behaviour`)."""
        with self._lock:
            self._defaults = self._defaults.updated(changes)

    def configure_target(self, target_id: str, **changes: Any) -> None:
        """Override behaviour for one pipeline/workflow; it now exists in strict mode too."""
        check_behaviour_fields(changes)
        with self._lock:
            self._targets.setdefault(target_id, {}).update(changes)

    def script_next_job(self, target: str | None = None, **changes: Any) -> None:
        """The next job created for `target` (any target when None) takes these overrides."""
        check_behaviour_fields(changes)
        with self._lock:
            self._next_jobs.append((target, dict(changes)))

    def set_strict_targets(self, strict: bool) -> None:
        with self._lock:
            self._strict_targets = strict

    def add_fault(self, fault: Fault | None = None, /, **fields_: Any) -> Fault:
        """Queue a fault: `add_fault(Fault(...))` or `add_fault(action="drop", path="/jobs$")`."""
        if fault is None:
            fault = Fault.from_json(fields_)
        with self._lock:
            self._faults.append(fault)
        return fault

    def add_job_listener(self, listener: Callable[[EmulatedJob], None]) -> None:
        """Call `listener` with every job the moment it is created, under the emulator's lock
        and before the create is answered (so a test can scope a fault to the job's id before
        any client knows it)."""
        with self._lock:
            self._job_listeners.append(listener)

    def remove_job_listener(self, listener: Callable[[EmulatedJob], None]) -> None:
        with self._lock:
            self._job_listeners.remove(listener)

    def add_tenant(self, key: str, label: str | None = None) -> str:
        """Accept `key` as tenant `label` (default: the key's fingerprint, `key_fingerprint`);
        returns the tenant's name. Its jobs are its own: another tenant's calls get 404."""
        with self._lock:
            return self._tenants.add_key(key, label)

    def add_client(self, client_id: str, client_secret: str, label: str | None = None) -> str:
        """Exchange these OAuth client credentials for tokens of tenant `label` (default: the
        client id's fingerprint); returns the tenant's name."""
        if not self.takes_oauth_clients:
            raise AdminError(f"{self.provider} takes API keys, not OAuth clients")
        with self._lock:
            return self._tenants.add_client(client_id, client_secret, label)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def faults(self) -> list[JsonObject]:
        with self._lock:
            return [f.to_json() for f in self._faults if f.remaining]

    def reset(self) -> None:
        """Forget jobs, faults, scripts, request log and target overrides."""
        with self._lock:
            self._reset_state()

    def behaviour_for(self, target: str | None) -> Behaviour:
        with self._lock:
            if target is None or target not in self._targets:
                return self._defaults
            return replace(self._defaults, **self._targets[target])

    def target_exists(self, target: str) -> bool:
        with self._lock:
            if self._strict_targets and target not in self._targets:
                return False
            return self.behaviour_for(target).exists

    # -- Python API: inspection -------------------------------------------------------------

    def jobs(self, *, include_deleted: bool = True) -> list[JsonObject]:
        """Every job with its admin facts and the provider's view of it, oldest first."""
        with self._lock:
            now = time.monotonic()
            return [
                self._admin_job(job, now)
                for job in self._jobs.values()
                if include_deleted or not job.deleted
            ]

    def job_view(self, job_id: str) -> JsonObject:
        """The job as the provider's API would show it now."""
        with self._lock:
            job = self._jobs[job_id]
            return self.render(job, job.state(time.monotonic()))

    def requests(self) -> list[JsonObject]:
        with self._lock:
            return list(self._request_log)

    def tenants(self) -> dict[str, JsonObject]:
        """Per tenant (its label or key fingerprint): `created`, `running`, `max_running`
        (the most jobs unfinished at once) and authenticated `calls`, since the last reset."""
        with self._lock:
            calls = {name: n for name, n in self._tenant_calls.items() if name}
            known = {*self._tenants.keys.values(), *(t for _, t in self._tenants.clients.values())}
            if self.api_key is not None:
                known.add(DEFAULT_TENANT)
            return tenant_stats(self._jobs.values(), calls, known, time.monotonic())

    def unauthorized_calls(self) -> int:
        """Calls refused for a missing or unknown credential, since the last reset."""
        with self._lock:
            return self._tenant_calls[""]

    def creates_received(self, target: str | None = None) -> int:
        with self._lock:
            if target is None:
                return sum(self._creates.values())
            return self._creates[target]

    # -- HTTP API ---------------------------------------------------------------------------

    def serve_admin(self, request: Request, client_host: str) -> Response:
        """Answer a request under `/_admin`: no provider auth, no faults, no request log."""
        if not _is_loopback(client_host):
            return Response.json(HTTPStatus.FORBIDDEN, {"error": "admin is loopback only"})
        try:
            return self._admin(request)
        except AdminError as exc:
            return Response.json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})

    def _admin(self, request: Request) -> Response:
        method, path = request.method, request.path.removeprefix("/_admin")
        ok = HTTPStatus.OK
        if (method, path) == ("GET", "/health"):
            return Response.json(ok, {"provider": self.provider, "url": self.url})
        if (method, path) == ("GET", "/jobs"):
            with self._lock:
                creates = dict(self._creates)
            body = {
                "jobs": self.jobs(),
                "creates_received": sum(creates.values()),
                "creates_by_target": creates,
            }
            return Response.json(ok, body)
        if (method, path) == ("GET", "/requests"):
            return Response.json(ok, {"requests": self.requests()})
        if (method, path) == ("GET", "/tenants"):
            body = {"tenants": self.tenants(), "unauthorized_calls": self.unauthorized_calls()}
            return Response.json(ok, body)
        if (method, path) == ("POST", "/tenants"):
            return Response.json(HTTPStatus.CREATED, {"tenant": self._add_tenant(request)})
        if (method, path) == ("POST", "/reset"):
            self.reset()
            return Response.json(ok, {"reset": True})
        if (method, path) == ("GET", "/config"):
            return Response.json(ok, self._config())
        if (method, path) == ("PUT", "/config"):
            body = _admin_body(request)
            if "defaults" in body:
                self.configure(**_admin_object(body["defaults"], "defaults"))
            if "strict_targets" in body:
                self.set_strict_targets(bool(body["strict_targets"]))
            return Response.json(ok, self._config())
        if method == "PUT" and path.startswith("/targets/"):
            target = path.removeprefix("/targets/")
            self.configure_target(target, **_admin_body(request))
            return Response.json(ok, self._config())
        if method == "DELETE" and path.startswith("/targets/"):
            with self._lock:
                self._targets.pop(path.removeprefix("/targets/"), None)
            return Response.json(ok, self._config())
        if (method, path) == ("POST", "/next-jobs"):
            body = _admin_body(request)
            scripted_for = body.pop("target", None)
            if scripted_for is not None and not isinstance(scripted_for, str):
                raise AdminError("target must be a pipeline/workflow id or null")
            self.script_next_job(scripted_for, **body)
            return Response.json(HTTPStatus.CREATED, self._config())
        if (method, path) == ("GET", "/faults"):
            return Response.json(ok, {"faults": self.faults()})
        if (method, path) == ("POST", "/faults"):
            fault = self.add_fault(Fault.from_json(_admin_body(request)))
            return Response.json(HTTPStatus.CREATED, fault.to_json())
        if (method, path) == ("DELETE", "/faults"):
            self.clear_faults()
            return Response.json(ok, {"faults": []})
        return Response.json(HTTPStatus.NOT_FOUND, {"error": f"no admin route {method} {path}"})

    def _add_tenant(self, request: Request) -> str:
        body = _admin_body(request)
        label = body.get("label")
        if set(body) - {"key", "client_id", "client_secret", "label"}:
            raise AdminError("a tenant is {key, label} or {client_id, client_secret, label}")
        if "key" in body and "client_id" not in body and "client_secret" not in body:
            return self.add_tenant(body["key"], label)
        if "key" not in body and "client_id" in body and "client_secret" in body:
            return self.add_client(body["client_id"], body["client_secret"], label)
        raise AdminError("a tenant is {key, label} or {client_id, client_secret, label}")

    def _config(self) -> JsonObject:
        with self._lock:
            return {
                "provider": self.provider,
                "defaults": asdict(self._defaults),
                "targets": {k: dict(v) for k, v in self._targets.items()},
                "next_jobs": [{"target": t, **c} for t, c in self._next_jobs],
                "strict_targets": self._strict_targets,
            }

    def _admin_job(self, job: EmulatedJob, now: float) -> JsonObject:
        state = job.state(now)
        return {
            "id": job.id,
            "target": job.target,
            "phase": state.phase,
            "status": self.provider_status(job, state),
            "progress": round(state.progress, 4),
            "created_at": iso(job.created_wall),
            "tenant": job.tenant,
            "deleted": job.deleted,
            "behaviour": asdict(job.behaviour),
            "view": self.render(job, state),
        }

    def _reset_state(self) -> None:
        self._defaults = self._initial_defaults
        self._strict_targets = self._initial_strict
        self._targets = {}
        self._next_jobs = []
        self._faults = []
        self._jobs = {}
        self._creates = Counter()
        self._request_log = deque(maxlen=_REQUEST_LOG_LIMIT)
        self._tenant_calls = Counter()


def _is_loopback(address: str) -> bool:
    return address.startswith("127.") or address in ("::1", "localhost")


def _admin_body(request: Request) -> JsonObject:
    if not request.body:
        return {}
    try:
        data = json.loads(request.body)
    except ValueError as exc:
        raise AdminError(f"body is not JSON: {exc}") from exc
    return _admin_object(data, "body")


def _admin_object(data: Any, what: str) -> JsonObject:
    if not isinstance(data, dict):
        raise AdminError(f"{what} must be a JSON object")
    return data

"""Shared machinery of the provider emulators: loopback HTTP server, routing, admin API,
scripted faults and the wall-clock job lifecycle."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import re
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Literal, Self, get_args, get_type_hints
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger("jobrelay_local.emulators")

DEFAULT_API_KEY = "local-dev-key"

Outcome = Literal["success", "failure"]
Phase = Literal["queued", "running", "succeeded", "failed", "stopped"]
FaultAction = Literal["status", "delay", "drop", "reset", "malformed", "empty"]
JsonObject = dict[str, Any]

ACTIVE_PHASES: frozenset[Phase] = frozenset({"queued", "running"})

# Progress a stuck job creeps up to and then keeps forever.
_STUCK_PROGRESS_CAP = 0.9
# How many received requests the log keeps; a long demo must not grow memory without bound.
_REQUEST_LOG_LIMIT = 10_000


def iso(epoch_seconds: float) -> str:
    """An ISO 8601 UTC timestamp with milliseconds and a `Z`, as the three providers print."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return str(uuid.uuid4())


class AdminError(ValueError):
    """A malformed admin request or Python API call (unknown field, wrong type)."""


@dataclass(frozen=True)
class Behaviour:
    """How jobs of one target (pipeline or workflow) behave; every field can be scripted.

    Lifecycle fields: `queued` seconds waiting, then `duration` seconds running, then the
    `outcome`. Target fields (`exists`, `forbidden`, `invalid`, `name`, `project_id`,
    `workspace_id`, `query_set_size`) describe the pipeline/workflow itself.
    """

    duration: float = 3.0
    queued: float = 0.5
    outcome: Outcome = "success"
    latency: float = 0.0
    stuck: bool = False
    # Reported instead of the provider's "running" status while the job is active (e.g. "paused").
    raw_status: str | None = None
    # Share of the work done when the job ends; None: all of it on success, half on failure.
    final_fraction: float | None = None
    exists: bool = True
    forbidden: bool = False
    invalid: bool = False
    name: str | None = None
    project_id: str | None = None
    workspace_id: str | None = None
    query_set_size: int = 10

    def updated(self, changes: Mapping[str, Any]) -> Behaviour:
        check_behaviour_fields(changes)
        return replace(self, **dict(changes))

    @property
    def work_fraction_at_end(self) -> float:
        if self.final_fraction is not None:
            return self.final_fraction
        return 1.0 if self.outcome == "success" else 0.5


def check_behaviour_fields(changes: Mapping[str, Any]) -> None:
    """Refuse unknown fields and wrong types, so a typo in a test script fails loudly."""
    hints = get_type_hints(Behaviour)
    for name, value in changes.items():
        if name not in hints:
            raise AdminError(f"unknown behaviour field {name!r}; known: {sorted(hints)}")
        fraction_too_big = name == "final_fraction" and value is not None and value > 1
        if not _value_fits(value, hints[name]) or fraction_too_big:
            raise AdminError(f"behaviour field {name!r} cannot be {value!r}")


def _value_fits(value: Any, hint: Any) -> bool:
    options = get_args(hint) or (hint,)
    if hint is Outcome:
        return value in options
    for option in options:
        if option is type(None) and value is None:
            return True
        if option is bool and isinstance(value, bool):
            return True
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return value >= 0
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value >= 0
        if option is str and isinstance(value, str):
            return True
    return False


@dataclass
class Fault:
    """One scripted fault, matched by method and a regex searched in the URL path.

    `action`: `status` answers the next code of `status` (the provider's error body, or
    `body`); `delay` waits `delay` seconds then answers normally; `drop` closes the socket
    without a byte; `reset` sends the headers and half the body then closes; `malformed`
    sends half the JSON body; `empty` sends no body. Every action waits `delay` first.
    With `after=True` the real handler runs first (the job is created) and the fault
    replaces its answer. The fault applies to `count` matching requests (default: one per
    code of `status`, else 1) after letting the first `skip` matching requests through.
    """

    action: FaultAction = "status"
    method: str = "*"
    path: str = ".*"
    status: list[int] = field(default_factory=list)
    count: int | None = None
    skip: int = 0
    retry_after: str | None = None
    delay: float = 0.0
    after: bool = False
    body: Any = None
    id: str = field(default_factory=new_id)
    matched: int = 0
    applied: int = 0

    def __post_init__(self) -> None:
        if self.action not in get_args(FaultAction):
            raise AdminError(f"unknown fault action {self.action!r}")
        if isinstance(self.status, int):
            self.status = [self.status]
        known_codes = set(HTTPStatus)
        if not isinstance(self.status, list) or not all(c in known_codes for c in self.status):
            raise AdminError(f"fault status must be HTTP status codes, not {self.status!r}")
        numbers = {"skip": self.skip, "delay": self.delay, "count": self.count or 0}
        for name, number in numbers.items():
            if isinstance(number, bool) or not isinstance(number, int | float) or number < 0:
                raise AdminError(f"fault {name} must be a number >= 0, not {number!r}")
        if not isinstance(self.after, bool) or not isinstance(self.method, str):
            raise AdminError("fault after must be a boolean and method a string")
        if self.action == "status" and not self.status:
            raise AdminError("a status fault needs at least one status code")
        if self.retry_after is not None:
            self.retry_after = _retry_after_text(self.retry_after)
        if self.count is None:
            self.count = len(self.status) if self.action == "status" else 1
        try:
            self._pattern = re.compile(self.path)
        except re.error as exc:
            raise AdminError(f"fault path is not a regex: {exc}") from exc

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        if not isinstance(data, dict):
            raise AdminError("a fault is a JSON object")
        known = {f.name for f in fields(cls)} - {"id", "matched", "applied"}
        unknown = set(data) - known
        if unknown:
            raise AdminError(f"unknown fault fields {sorted(unknown)}; known: {sorted(known)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise AdminError(str(exc)) from exc

    def to_json(self) -> JsonObject:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def remaining(self) -> int:
        return max(0, (self.count or 0) - self.applied)

    def matches(self, method: str, path: str) -> bool:
        method_ok = self.method in ("*", "") or self.method.upper() == method.upper()
        return method_ok and self._pattern.search(path) is not None

    def next_status(self) -> int | None:
        if not self.status:
            return None
        return self.status[min(self.applied, len(self.status)) - 1]


def _retry_after_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class JobState:
    """Where a job stands at one instant of the emulator's clock."""

    phase: Phase
    progress: float
    started_at: float | None
    ended_at: float | None
    updated_at: float


@dataclass
class EmulatedJob:
    """A job in the store; its state is derived from the clock, never advanced by a thread."""

    id: str
    target: str
    behaviour: Behaviour
    created_mono: float
    created_wall: float
    order: int
    data: JsonObject = field(default_factory=dict)
    rejected: bool = False
    stopped_mono: float | None = None
    deleted: bool = False

    def wall(self, offset: float) -> float:
        return self.created_wall + offset

    def state(self, now_mono: float) -> JobState:
        if self.rejected:
            created = self.created_wall
            return JobState("failed", 0.0, None, created, created)
        if self.stopped_mono is not None:
            at_stop = self._state_at(self.stopped_mono - self.created_mono)
            stopped = self.wall(self.stopped_mono - self.created_mono)
            return JobState("stopped", at_stop.progress, at_stop.started_at, stopped, stopped)
        return self._state_at(now_mono - self.created_mono)

    def _state_at(self, elapsed: float) -> JobState:
        b = self.behaviour
        now = self.wall(elapsed)
        if elapsed < b.queued:
            return JobState("queued", 0.0, None, None, self.created_wall)
        started = self.wall(b.queued)
        running_for = elapsed - b.queued
        share = running_for / b.duration if b.duration > 0 else 1.0
        if b.stuck:
            return JobState("running", min(share, 1.0) * _STUCK_PROGRESS_CAP, started, None, now)
        if share < 1.0:
            return JobState("running", share * b.work_fraction_at_end, started, None, now)
        ended = self.wall(b.queued + b.duration)
        phase: Phase = "succeeded" if b.outcome == "success" else "failed"
        return JobState(phase, b.work_fraction_at_end, started, ended, ended)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    # When it arrived (monotonic) and whether it creates a job: the request log's timings
    # show how many calls a client had in flight at once.
    received: float = field(default_factory=time.monotonic)
    creates: bool = False

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def target(self) -> str | None:
        return self.params.get("target")


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(
        cls,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Response:
        return cls(status, json.dumps(payload).encode(), content_type, dict(headers or {}))

    @classmethod
    def no_content(cls) -> Response:
        return cls(HTTPStatus.NO_CONTENT, b"", "")


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    creates: bool = False
    auth: bool = True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Tests start and stop servers quickly; let the next one bind a recent port.
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: EmulatorServer) -> None:
        self.emulator = emulator
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        with self.sockets_lock:
            self.open_sockets.add(conn)
        return conn, address

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def close_open_sockets(self) -> None:
        # Idle keep-alive connections would otherwise outlive stop() in their daemon threads.
        with self.sockets_lock:
            for conn in list(self.open_sockets):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self.open_sockets.clear()


class _RequestHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 so clients keep connections alive, as they do with the real providers.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, each answer waits ~40 ms.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:
        self.server.emulator.serve(self)

    def do_POST(self) -> None:
        self.server.emulator.serve(self)

    def do_PUT(self) -> None:
        self.server.emulator.serve(self)

    def do_DELETE(self) -> None:
        self.server.emulator.serve(self)

    def do_PATCH(self) -> None:
        self.server.emulator.serve(self)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


class EmulatorServer:
    """A provider emulator: a real HTTP server on loopback with a job store and an admin API.

    Subclasses declare the provider's routes and its error shapes. Everything here runs
    under one lock, so handlers see a consistent store; sleeps happen outside the lock.
    """

    provider: ClassVar[str] = "emulator"
    # The provider's status word for each phase of the job clock.
    status_by_phase: ClassVar[Mapping[Phase, str]]

    _defaults: Behaviour
    _strict_targets: bool
    _targets: dict[str, JsonObject]
    _next_jobs: list[tuple[str | None, JsonObject]]
    _faults: list[Fault]
    _jobs: dict[str, EmulatedJob]
    _creates: Counter[str]
    _request_log: deque[JsonObject]

    def __init__(
        self,
        *,
        api_key: str | None = DEFAULT_API_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        defaults: Behaviour | None = None,
        strict_targets: bool = False,
    ) -> None:
        """`api_key=None` accepts any non-empty credential. With `strict_targets`, only
        targets configured with `configure_target` exist; otherwise every id exists unless
        configured with `exists=False`."""
        self.api_key = api_key
        self.host = host
        self.port = port
        self._initial_defaults = defaults or Behaviour()
        self._initial_strict = strict_targets
        self._lock = threading.RLock()
        self._job_listeners: list[Callable[[EmulatedJob], None]] = []
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._routes = self.routes()
        self._order = itertools.count()
        self._reset_state()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"{self.provider}-emulator",
            daemon=True,
        )
        self._thread.start()
        logger.info("%s emulator listening on %s", self.provider, self.url)
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.close_open_sockets()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- what subclasses provide -------------------------------------------------------------

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def error(self, status: int, message: str, request: Request) -> Response:
        """The provider's own error body for `status`."""
        raise NotImplementedError

    def authorized(self, request: Request) -> bool:
        """Bearer auth; providers that accept other forms override this."""
        return self.key_accepted(_bearer_token(request.header("Authorization")))

    def unauthorized(self, request: Request) -> Response:
        return self.error(HTTPStatus.UNAUTHORIZED, "Full authentication is required", request)

    def render(self, job: EmulatedJob, state: JobState) -> JsonObject:
        """The job as the provider's API shows it."""
        raise NotImplementedError

    def provider_status(self, job: EmulatedJob, state: JobState) -> str:
        if state.phase in ACTIVE_PHASES and job.behaviour.raw_status is not None:
            return job.behaviour.raw_status
        return self.status_by_phase[state.phase]

    def caller_id(self, request: Request) -> str:
        """A stable user id per credential; uuid5 is a one-way hash, so no key is kept."""
        credential = request.header("Authorization") or "anonymous"
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.provider}-user:{credential}"))

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

    def creates_received(self, target: str | None = None) -> int:
        with self._lock:
            if target is None:
                return sum(self._creates.values())
            return self._creates[target]

    # -- store helpers for subclasses (call under the lock) ---------------------------------

    def new_job(
        self, target: str, data: JsonObject, *, job_id: str | None = None, store: bool = True
    ) -> EmulatedJob:
        behaviour = self.behaviour_for(target)
        for index, (scripted_target, changes) in enumerate(self._next_jobs):
            if scripted_target is None or scripted_target == target:
                if store:
                    del self._next_jobs[index]
                behaviour = behaviour.updated(changes)
                break
        job = EmulatedJob(
            id=job_id or new_id(),
            target=target,
            behaviour=behaviour,
            created_mono=time.monotonic(),
            created_wall=time.time(),
            order=next(self._order),
            data=data,
        )
        if store:
            self._jobs[job.id] = job
            for listener in list(self._job_listeners):
                listener(job)
        return job

    def find_job(self, job_id: str) -> EmulatedJob | None:
        job = self._jobs.get(job_id)
        return None if job is None or job.deleted else job

    def live_jobs(self) -> Iterator[EmulatedJob]:
        return (job for job in self._jobs.values() if not job.deleted)

    def now(self) -> float:
        return time.monotonic()

    def key_accepted(self, key: str | None) -> bool:
        if not key:
            return False
        return self.api_key is None or key == self.api_key

    # -- serving ----------------------------------------------------------------------------

    def serve(self, http: _RequestHandler) -> None:
        request = _read_request(http)
        if request.path == "/_admin" or request.path.startswith("/_admin/"):
            self._write(http, self._serve_admin(http, request))
            return
        route, allowed = self._match(request)
        with self._lock:
            target = self.target_of(request)
            if route is not None and route.creates:
                self._creates[target or ""] += 1
                request.creates = True
            fault = self._take_fault(request)
            latency = self.behaviour_for(target).latency
        if latency:
            time.sleep(latency)
        if fault is not None and not fault.after:
            time.sleep(fault.delay)
        answers_instead = fault is not None and not fault.after and fault.action != "delay"
        response = None if answers_instead else self._handle(request, route, allowed)
        if fault is not None and fault.after:
            time.sleep(fault.delay)
        if fault is not None and fault.action != "delay":
            self._send_fault(http, request, fault, response)
            return
        assert response is not None
        # Log before answering: once a client has its answer, the log already shows it.
        self._log(request, response.status, fault)
        self._write(http, response)

    def _match(self, request: Request) -> tuple[Route | None, list[str]]:
        allowed: list[str] = []
        for route in self._routes:
            found = route.pattern.fullmatch(request.path)
            if found is None:
                continue
            if route.method != request.method:
                allowed.append(route.method)
                continue
            request.params = {k: v for k, v in found.groupdict().items() if v is not None}
            return route, allowed
        return None, allowed

    def _handle(self, request: Request, route: Route | None, allowed: list[str]) -> Response:
        if route is None:
            if allowed:
                response = self.error(HTTPStatus.METHOD_NOT_ALLOWED, "Method Not Allowed", request)
                response.headers["Allow"] = ", ".join(sorted(set(allowed)))
                return response
            return self.error(HTTPStatus.NOT_FOUND, "Not Found", request)
        if route.auth and not self.authorized(request):
            return self.unauthorized(request)
        try:
            with self._lock:
                return route.handler(request)
        except Exception:
            # An emulator bug must look like a provider 500, not hang the client.
            logger.exception(
                "%s emulator failed on %s %s", self.provider, request.method, request.path
            )
            return self.error(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal Server Error", request)

    def target_of(self, request: Request) -> str | None:
        """The pipeline/workflow a request is about, for create counts and latency."""
        job_id = request.params.get("job_id")
        if request.target is None and job_id is not None and job_id in self._jobs:
            return self._jobs[job_id].target
        return request.target

    def _take_fault(self, request: Request) -> Fault | None:
        """The first fault due for this request. Every matching fault counts the request, so
        `skip` counts requests that matched, whichever fault (if any) answered them."""
        chosen: Fault | None = None
        for fault in self._faults:
            if not fault.remaining or not fault.matches(request.method, request.path):
                continue
            fault.matched += 1
            if chosen is None and fault.matched > fault.skip:
                chosen = fault
        if chosen is not None:
            chosen.applied += 1
        return chosen

    def _send_fault(
        self, http: _RequestHandler, request: Request, fault: Fault, response: Response | None
    ) -> None:
        """Answer as the fault says; `response` is the real answer of an `after` fault."""
        if fault.action == "drop":
            self._log(request, None, fault)
            _close_now(http)
            return
        code = fault.next_status()
        cut_after: int | None = None
        if fault.action == "status":
            assert code is not None
            if fault.body is not None:
                faulty = Response.json(code, fault.body)
            else:
                faulty = self.error(code, HTTPStatus(code).phrase, request)
            if fault.retry_after is not None:
                faulty.headers["Retry-After"] = fault.retry_after
        else:
            real = response or Response.json(HTTPStatus.OK, {"status": "running", "id": new_id()})
            faulty = replace(real, status=code or real.status, headers=dict(real.headers))
            if fault.action == "empty":
                faulty.body = b""
            elif fault.action == "malformed":
                # Cutting a JSON object in half always leaves it unparseable.
                faulty.body = real.body[: max(1, len(real.body) // 2)] if real.body else b'{"'
            else:
                # reset: announce the whole body, send half of it, then hang up.
                cut_after = len(real.body) // 2
        self._log(request, faulty.status, fault)
        self._write(http, faulty, cut_after)
        if cut_after is not None:
            _close_now(http)

    def _write(
        self, http: _RequestHandler, response: Response, cut_after: int | None = None
    ) -> None:
        http.send_response(response.status)
        for name, value in response.headers.items():
            http.send_header(name, value)
        if response.content_type:
            http.send_header("Content-Type", response.content_type)
        http.send_header("Content-Length", str(len(response.body)))
        http.end_headers()
        body = response.body if cut_after is None else response.body[:cut_after]
        with contextlib.suppress(OSError):
            http.wfile.write(body)
            http.wfile.flush()

    def _log(self, request: Request, status: int | None, fault: Fault | None) -> None:
        # Auth header values are never kept: only whether one was sent.
        entry: JsonObject = {
            "time": iso(time.time()),
            "method": request.method,
            "path": request.path,
            "query": {k: v[0] if len(v) == 1 else v for k, v in request.query.items()},
            "status": status,
            "fault": fault.action if fault is not None else None,
            "fault_id": fault.id if fault is not None else None,
            "auth": request.header("Authorization") is not None,
            "creates": request.creates,
            "received_mono": request.received,
            "answered_mono": time.monotonic(),
        }
        with self._lock:
            self._request_log.append(entry)

    # -- admin API --------------------------------------------------------------------------

    def _serve_admin(self, http: _RequestHandler, request: Request) -> Response:
        if not _is_loopback(http.client_address[0]):
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


def _read_request(http: _RequestHandler) -> Request:
    parts = urlsplit(http.path)
    length = int(http.headers.get("Content-Length") or 0)
    # Always drain the body: on a kept-alive connection leftovers would corrupt the next request.
    body = http.rfile.read(length) if length > 0 else b""
    return Request(
        method=http.command,
        path=parts.path,
        query=parse_qs(parts.query, keep_blank_values=True),
        headers={name.lower(): value for name, value in http.headers.items()},
        body=body,
    )


def _close_now(http: _RequestHandler) -> None:
    http.close_connection = True
    with contextlib.suppress(OSError):
        http.connection.shutdown(socket.SHUT_RDWR)


def _is_loopback(address: str) -> bool:
    return address.startswith("127.") or address in ("::1", "localhost")


def _bearer_token(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


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


def json_body(request: Request) -> Any:
    """The parsed JSON body; raises ValueError when it is not JSON."""
    return json.loads(request.body)


def page_count(total: int, size: int) -> int:
    return math.ceil(total / size) if size else 0

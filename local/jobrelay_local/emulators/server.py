"""The emulators' serving core: a real HTTP server on loopback that routes each request to the
provider's handler, delivers scripted faults and logs what it answered."""

from __future__ import annotations

import contextlib
import hmac
import itertools
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

from .admin import EmulatorAdmin
from .faults import Fault, take_fault
from .jobs import ACTIVE_PHASES, Behaviour, EmulatedJob, JobState, JsonObject, Phase, iso, new_id
from .routes import Request, Response, Route, bearer_token, match_route
from .tenants import DEFAULT_TENANT, TenantBook, key_fingerprint

logger = logging.getLogger("jobrelay_local.emulators")

DEFAULT_API_KEY = "local-dev-key"


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


class EmulatorServer(EmulatorAdmin):
    """A provider emulator: a real HTTP server on loopback with a job store and an admin API.

    Subclasses declare the provider's routes and its error shapes. Everything here runs
    under one lock, so handlers see a consistent store; sleeps happen outside the lock.
    """

    provider: ClassVar[str] = "emulator"
    # The provider's status word for each phase of the job clock.
    status_by_phase: ClassVar[Mapping[Phase, str]]

    def __init__(
        self,
        *,
        api_key: str | None = DEFAULT_API_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        defaults: Behaviour | None = None,
        strict_targets: bool = False,
    ) -> None:
        """`api_key` is the key of the default tenant; more tenants are added with
        `add_tenant`. `api_key=None` accepts any non-empty credential (each key its own
        tenant). With `strict_targets`, only targets configured with `configure_target`
        exist; otherwise every id exists unless configured with `exists=False`."""
        self.api_key = api_key
        self._tenants = TenantBook()
        self.host = host
        self.port = port
        self._initial_defaults = defaults or Behaviour()
        self._initial_strict = strict_targets
        self._lock = threading.RLock()
        self._job_listeners = []
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

    def credential(self, request: Request) -> str | None:
        """The key or token the request carries: bearer auth; providers that accept other
        forms override this."""
        return bearer_token(request.header("Authorization"))

    def authorized(self, request: Request) -> bool:
        """Whether the request's credential is a tenant's; sets `request.tenant`."""
        request.tenant = self.tenant_of_key(self.credential(request))
        return request.tenant is not None

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

    def target_of(self, request: Request) -> str | None:
        """The pipeline/workflow a request is about, for create counts and latency."""
        job_id = request.params.get("job_id")
        if request.target is None and job_id is not None and job_id in self._jobs:
            return self._jobs[job_id].target
        return request.target

    # -- store helpers for subclasses (call under the lock) ---------------------------------

    def new_job(
        self,
        target: str,
        data: JsonObject,
        *,
        job_id: str | None = None,
        store: bool = True,
        tenant: str | None = None,
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
            tenant=tenant,
        )
        if store:
            self._jobs[job.id] = job
            for listener in list(self._job_listeners):
                listener(job)
        return job

    def find_job(self, job_id: str, request: Request | None = None) -> EmulatedJob | None:
        """The job, if not deleted; with `request`, only if it is the request's tenant's (a
        multi-tenant API answers another account's job as not found)."""
        job = self._jobs.get(job_id)
        if job is None or job.deleted or not _sees(request, job):
            return None
        return job

    def live_jobs(self, request: Request | None = None) -> Iterator[EmulatedJob]:
        """The jobs not deleted; with `request`, the request's tenant's only."""
        return (job for job in self._jobs.values() if not job.deleted and _sees(request, job))

    def now(self) -> float:
        return time.monotonic()

    def key_accepted(self, key: str | None) -> bool:
        return self.tenant_of_key(key) is not None

    def tenant_of_key(self, key: str | None) -> str | None:
        """The tenant a key (or issued token) belongs to; None for a key nobody has."""
        if not key:
            return None
        if self.api_key is not None and hmac.compare_digest(key.encode(), self.api_key.encode()):
            return DEFAULT_TENANT
        with self._lock:
            tenant = self._tenants.tenant_of(key, time.monotonic())
        if tenant is None and self.api_key is None:
            return key_fingerprint(key)
        return tenant

    # -- serving ----------------------------------------------------------------------------

    def serve(self, http: _RequestHandler) -> None:
        request = _read_request(http)
        if request.path == "/_admin" or request.path.startswith("/_admin/"):
            self._write(http, self.serve_admin(request, http.client_address[0]))
            return
        route, allowed = match_route(self._routes, request)
        with self._lock:
            target = self.target_of(request)
            if route is not None and route.creates:
                self._creates[target or ""] += 1
                request.creates = True
            fault = take_fault(self._faults, request.method, request.path)
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

    def _handle(self, request: Request, route: Route | None, allowed: list[str]) -> Response:
        if route is None:
            if allowed:
                response = self.error(HTTPStatus.METHOD_NOT_ALLOWED, "Method Not Allowed", request)
                response.headers["Allow"] = ", ".join(sorted(set(allowed)))
                return response
            return self.error(HTTPStatus.NOT_FOUND, "Not Found", request)
        if route.auth:
            accepted = self.authorized(request)
            with self._lock:
                self._tenant_calls[request.tenant or ""] += 1
            if not accepted:
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
            # The tenant the credential belongs to (None: refused or not asked), never the key.
            "tenant": request.tenant,
            "creates": request.creates,
            "received_mono": request.received,
            "answered_mono": time.monotonic(),
        }
        with self._lock:
            self._request_log.append(entry)


def _sees(request: Request | None, job: EmulatedJob) -> bool:
    return request is None or request.tenant is None or job.tenant == request.tenant


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

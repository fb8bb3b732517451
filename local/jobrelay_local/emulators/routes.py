"""What an emulator's route handlers take and give: the request, the response and the route
that binds a method and path pattern to a handler. No sockets here."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any


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
    # The tenant whose credential the request carries, once it is authorized.
    tenant: str | None = None

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


def match_route(routes: list[Route], request: Request) -> tuple[Route | None, list[str]]:
    """The route for the request (its path parameters set on it), else the methods the
    path allows, for a 405's `Allow`."""
    allowed: list[str] = []
    for route in routes:
        found = route.pattern.fullmatch(request.path)
        if found is None:
            continue
        if route.method != request.method:
            allowed.append(route.method)
            continue
        request.params = {k: v for k, v in found.groupdict().items() if v is not None}
        return route, allowed
    return None, allowed


def bearer_token(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def json_body(request: Request) -> Any:
    """The parsed JSON body; raises ValueError when it is not JSON."""
    return json.loads(request.body)


def page_count(total: int, size: int) -> int:
    return math.ceil(total / size) if size else 0

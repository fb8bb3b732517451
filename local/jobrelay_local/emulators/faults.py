"""A scripted fault: which requests it catches and how it spoils their answer."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from http import HTTPStatus
from typing import Any, Literal, get_args

from .jobs import AdminError, JsonObject, new_id

FaultAction = Literal["status", "delay", "drop", "reset", "malformed", "empty"]


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


def take_fault(faults: list[Fault], method: str, path: str) -> Fault | None:
    """The first fault due for this request. Every matching fault counts the request, so
    `skip` counts requests that matched, whichever fault (if any) answered them."""
    chosen: Fault | None = None
    for fault in faults:
        if not fault.remaining or not fault.matches(method, path):
            continue
        fault.matched += 1
        if chosen is None and fault.matched > fault.skip:
            chosen = fault
    if chosen is not None:
        chosen.applied += 1
    return chosen


def _retry_after_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)

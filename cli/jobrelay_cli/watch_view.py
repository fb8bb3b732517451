"""The tables of `jobrelay jobs` and `jobrelay watch`: the requests in flight and, for watch,
those that ended since it started, with their outcome; for jobs, the requests waiting for a
slot of their connection."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from rich.table import Table

from jobrelay_cli.tracking import ConnectionQueue, RequestStatus, Tracking


@dataclass
class Watch:
    """What `watch` shows, brought up to date by `refresh`."""

    tracking: Tracking
    started: datetime
    provider: str | None = None
    running: dict[str, RequestStatus] = field(default_factory=dict)
    ended: dict[str, RequestStatus] = field(default_factory=dict)
    # Which request each closed execution tracked (closed executions do not change).
    _request_of: dict[str, str | None] = field(default_factory=dict)

    def refresh(self) -> None:
        """Read the requests in flight again; a request that was in flight and is no longer,
        or whose execution closed since watch started, is read once more as ended (again
        until its outcome is known: an operator's stop is published after the execution
        closed)."""
        running = {r.request_id: r for r in self.tracking.in_flight(self.provider)}
        candidates = set(self.running)
        for arn in self.tracking.closed_since(self.started):
            if arn not in self._request_of:
                self._request_of[arn] = self.tracking.request_of(arn)
            request_id = self._request_of[arn]
            if request_id is not None:
                candidates.add(request_id)
        for request_id in sorted(candidates - running.keys()):
            known = self.ended.get(request_id)
            if known is not None and known.outcome is not None:
                continue
            reading = self.tracking.request(request_id)
            # A generation that continued as new closed, the request goes on in the next one.
            if reading is None or reading.execution_status == "RUNNING":
                continue
            if self.provider is None or reading.provider == self.provider:
                self.ended[request_id] = reading
        self.running = running

    def table(self, now: datetime) -> Table:
        ended = sorted(self.ended.values(), key=lambda r: r.stopped_at or self.started)
        return requests_table(
            list(self.running.values()),
            ended,
            now,
            title=f"{len(self.running)} in flight, {len(ended)} ended since "
            f"{self.started:%H:%M:%S} (Ctrl-C leaves)",
        )


def requests_table(
    running: list[RequestStatus], ended: list[RequestStatus], now: datetime, *, title: str
) -> Table:
    table = Table(title=title)
    for column in ("request", "provider", "job", "status", "polls", "next poll", "outcome"):
        table.add_column(column, overflow="fold")
    for reading in running:
        table.add_row(*_row(reading), _next_poll(reading, now), "…")
    for reading in ended:
        outcome = reading.outcome.type.rsplit(".", 1)[-1] if reading.outcome else "unpublished"
        table.add_row(*_row(reading), "", outcome)
    return table


def waiting_table(
    queues: list[ConnectionQueue], now: datetime, *, title: str | None = None
) -> Table:
    """Per connection with slots: how many are held of its cap, then its waiting requests in
    line (the oldest `WAITERS_SHOWN`; the rest counted)."""
    waiting = sum(queue.queued for queue in queues)
    table = Table(title=title or f"{waiting} request(s) waiting for a slot")
    for column in ("connection", "in flight", "place", "request", "waiting since", "deadline"):
        table.add_column(column, overflow="fold")
    for queue in queues:
        head = (queue.connection, f"{queue.in_flight} of {queue.cap}")
        if not queue.waiters:
            table.add_row(*head, "", "nobody waiting", "", "", end_section=True)
            continue
        for index, reading in enumerate(queue.waiters):
            waits = reading.waiting
            since = waits.since if waits else None
            place = waits.position if waits and waits.position else index + 1
            table.add_row(
                *(head if index == 0 else ("", "")),
                str(place),
                reading.request_id,
                "" if since is None else f"{span((now - since).total_seconds())} ago",
                _until(reading.deadline_at, now),
                end_section=index == len(queue.waiters) - 1 and queue.queued <= len(queue.waiters),
            )
        if queue.queued > len(queue.waiters):
            more = queue.queued - len(queue.waiters)
            table.add_row("", "", "", f"… and {more} more", "", "", end_section=True)
    return table


def span(seconds: float) -> str:
    """A duration as an operator reads it: 45s, 12m, 3h05m, 2d04h."""
    whole = max(0, round(seconds))
    if whole < 120:
        return f"{whole}s"
    if whole < 7200:
        return f"{whole // 60}m"
    if whole < 2 * 86_400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86_400}d{whole % 86_400 // 3600:02d}h"


def _until(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return ""
    seconds = (moment - now).total_seconds()
    return f"in {span(seconds)}" if seconds >= 1 else f"passed {span(-seconds)} ago"


def _row(reading: RequestStatus) -> tuple[str, str, str, str, str]:
    status = reading.status or "?"
    if reading.raw_status and reading.raw_status != reading.status:
        status += f" ({reading.raw_status})"
    if reading.cancel is not None and reading.outcome is None:
        status += ", cancel asked"
    # The connection beside its provider when it is a named one (the width of an 80-column
    # terminal has no room for a column that mostly repeats the provider).
    provider = reading.provider or ""
    if reading.connection and reading.connection != reading.provider:
        provider += f" ({reading.connection})"
    return (
        reading.request_id,
        provider,
        reading.remote_job_id or "",
        status,
        "" if reading.polls is None else str(reading.polls),
    )


def _next_poll(reading: RequestStatus, now: datetime) -> str:
    if reading.next_poll_at is None:
        return ""
    seconds = (reading.next_poll_at - now).total_seconds()
    return f"in {seconds:.0f}s" if seconds >= 1 else "due"

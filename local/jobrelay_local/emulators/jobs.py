"""The emulators' scripted job model: how a target's jobs behave, and where a job stands at
any instant of the clock (derived from the clock, never advanced by a thread)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, get_args, get_type_hints

Outcome = Literal["success", "failure"]
Phase = Literal["queued", "running", "succeeded", "failed", "stopped"]
JsonObject = dict[str, Any]

ACTIVE_PHASES: frozenset[Phase] = frozenset({"queued", "running"})

# Progress a stuck job creeps up to and then keeps forever.
_STUCK_PROGRESS_CAP = 0.9


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
    # Matatika retries (docs/providers.md, "Matatika"): a job runs up to `max_attempts`
    # times; its first `failed_attempts` attempts end in error, then `outcome` holds. The
    # retry is queued `retry_delay` seconds after an error; None: the retry never comes.
    max_attempts: int = 1
    failed_attempts: int = 0
    retry_delay: float | None = 0.5
    # Matatika lists "running or completed" jobs: False hides a job from lists while queued.
    listed_while_queued: bool = True
    # The provider stops a job that has run this many seconds (Matatika's pipeline timeout).
    stopped_after: float | None = None

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


@dataclass(frozen=True)
class JobState:
    """Where a job stands at one instant of the emulator's clock."""

    phase: Phase
    progress: float
    started_at: float | None
    ended_at: float | None
    updated_at: float
    attempt: int = 1
    # An attempt ended in error and the provider has queued its retry (not yet started).
    retrying: bool = False


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
    # The tenant whose key created the job: only its calls see the job.
    tenant: str | None = None
    rejected: bool = False
    stopped_mono: float | None = None
    deleted: bool = False

    def wall(self, offset: float) -> float:
        return self.created_wall + offset

    def state(self, now_mono: float) -> JobState:
        if self.rejected:
            created = self.created_wall
            return JobState("failed", 0.0, None, created, created)
        stopped_mono = self.stopped_mono
        timeout = self.behaviour.stopped_after
        if stopped_mono is None and timeout is not None:
            at = self.behaviour.queued + timeout
            if now_mono - self.created_mono >= at and self._state_at(at).phase == "running":
                stopped_mono = self.created_mono + at
        if stopped_mono is not None:
            at_stop = self._state_at(stopped_mono - self.created_mono)
            stopped = self.wall(stopped_mono - self.created_mono)
            return replace(
                at_stop, phase="stopped", ended_at=stopped, updated_at=stopped, retrying=False
            )
        return self._state_at(now_mono - self.created_mono)

    def active_until(self) -> float | None:
        """When (monotonic) the job stops being unfinished at the provider: its last attempt
        ends, the provider's timeout or a stop ends it, or it was refused at creation. None
        while nothing will end it (a stuck job nobody stops)."""
        if self.rejected:
            return self.created_mono
        ends: list[float] = []
        natural = self._natural_end()
        if natural is not None:
            ends.append(self.created_mono + natural)
        timeout = self.behaviour.stopped_after
        if timeout is not None:
            at = self.behaviour.queued + timeout
            if self._state_at(at).phase == "running":
                ends.append(self.created_mono + at)
        if self.stopped_mono is not None:
            ends.append(self.stopped_mono)
        return min(ends) if ends else None

    def _natural_end(self) -> float | None:
        """Seconds after creation when the last attempt ends (as `_state_at` counts them)."""
        b = self.behaviour
        if b.stuck:
            return None
        attempt, offset = 1, 0.0
        while True:
            failing = attempt <= b.failed_attempts
            if attempt >= max(1, b.max_attempts) or not failing or b.retry_delay is None:
                return offset + b.queued + b.duration
            offset += b.queued + b.duration + b.retry_delay
            attempt += 1

    def _state_at(self, elapsed: float) -> JobState:
        """The state of the attempt under way `elapsed` seconds after creation; each attempt
        is `queued` + `duration` long and the next one starts `retry_delay` after an error."""
        b = self.behaviour
        attempt, offset = 1, 0.0
        while True:
            failing = attempt <= b.failed_attempts
            last = attempt >= max(1, b.max_attempts) or not failing or b.retry_delay is None
            if last or elapsed < offset + b.queued + b.duration + (b.retry_delay or 0.0):
                break
            offset += b.queued + b.duration + (b.retry_delay or 0.0)
            attempt += 1
        outcome: Outcome = "failure" if failing else b.outcome
        state = self._attempt_at(elapsed - offset, offset, outcome)
        retrying = state.phase == "failed" and not last
        return replace(state, attempt=attempt, retrying=retrying)

    def _attempt_at(self, elapsed: float, offset: float, outcome: Outcome) -> JobState:
        b = self.behaviour
        now = self.wall(offset + elapsed)
        if elapsed < b.queued:
            return JobState("queued", 0.0, None, None, self.wall(offset))
        started = self.wall(offset + b.queued)
        running_for = elapsed - b.queued
        share = running_for / b.duration if b.duration > 0 else 1.0
        fraction = replace(b, outcome=outcome).work_fraction_at_end
        if b.stuck:
            return JobState("running", min(share, 1.0) * _STUCK_PROGRESS_CAP, started, None, now)
        if share < 1.0:
            return JobState("running", share * fraction, started, None, now)
        ended = self.wall(offset + b.queued + b.duration)
        phase: Phase = "succeeded" if outcome == "success" else "failed"
        return JobState(phase, fraction, started, ended, ended)

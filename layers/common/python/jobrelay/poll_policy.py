"""The adaptive poll policy: how long the tracker waits before it looks at a job again.

Pure (no clock, no randomness of its own, no I/O), so its promise is checked as logic: with
no provider hint, a job is noticed within `max(base, 10% of its running time)` of its end,
where `base` is the poll interval (30 s by default). The wait grows with the job's age, is
stretched by what the provider tells about the remaining time, is cut at random by a little
(so trackers started together do not poll in step) and kept within the configured bounds.
Every wait in a Standard workflow costs the same three state transitions, whatever its
length, so fewer and longer waits are what make tracking cheap. See docs/performance.md.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

# The detection lag a job of running time T is allowed: max(base, LAG_FRACTION * T).
LAG_FRACTION = 0.1

WaitReason = Literal["age", "hint", "min", "max", "deadline"]


class JobHints(NamedTuple):
    """What the provider told about the job's remaining time, at one poll.

    Ages are seconds since the job was created. `progress_origin` is the progress first
    seen while the job was running and `progress_origin_age` when: with the current
    progress they give the job's rate (deepset's executed / total requests over time).
    """

    progress: float | None = None
    estimated_duration_seconds: float | None = None
    progress_origin: float | None = None
    progress_origin_age: float | None = None


class PollDecision(NamedTuple):
    """The wait before the next poll, why, and the lag it keeps for a job ending meanwhile."""

    wait_seconds: int
    reason: WaitReason
    lag_bound_seconds: int
    predicted_end_age: float | None = None


# A policy's settings, in the order of its constructor (and of its repr).
_POLICY_FIELDS = (
    "base_seconds",
    "min_poll_seconds",
    "max_poll_seconds",
    "jitter",
    "reserve",
    "hint_stretch",
    "hint_margin",
    "min_progress_step",
)


class PollPolicy:
    """How waits are chosen; one instance per job (its base and bounds), reused every round.

    - `base_seconds`: the wait of a young job and the floor of the lag bound.
    - `min_poll_seconds`, `max_poll_seconds`: every wait stays within these, whatever the
      age or the hints say (the deadline may still cut the last wait shorter). The lag
      bound holds while `min_poll_seconds <= base_seconds`; a `max_poll_seconds` below the
      bound only makes polls more frequent.
    - `jitter`: up to this share of a wait is taken off at random; `reserve` is always taken
      off (the round's own time: state transitions and the Lambda call). Both only shorten
      a wait, so neither can break the lag bound.
    - `hint_stretch`: a provider's prediction may stretch one wait to at most this many
      times the lag bound; that multiple is also what a job costs in lag when it ends well
      before its provider predicted (a sudden failure, for instance).
    - `hint_margin`: the last share of the predicted running time is not trusted: waits are
      stretched only up to `(1 - hint_margin) * predicted end`, and age-based from there,
      so a job ending within that margin of its prediction (or later) keeps the lag bound.
    - `min_progress_step`: progress must have moved by this much since its origin before
      its rate predicts anything.

    Immutable and compared by value. A plain class with slots, not a frozen dataclass:
    making a dataclass compiles its methods at import, which PollJobStatus's cold start
    paid (with the two value types above, ~12 M instructions).
    """

    __slots__ = _POLICY_FIELDS

    base_seconds: int
    min_poll_seconds: int
    max_poll_seconds: int
    jitter: float
    reserve: float
    hint_stretch: float
    hint_margin: float
    min_progress_step: float

    def __init__(
        self,
        base_seconds: int = 30,
        min_poll_seconds: int = 1,
        max_poll_seconds: int = 300,
        jitter: float = 0.05,
        reserve: float = 0.02,
        hint_stretch: float = 3.0,
        hint_margin: float = 0.25,
        min_progress_step: float = 0.05,
    ) -> None:
        if base_seconds < 1 or min_poll_seconds < 1:
            raise ValueError("base_seconds and min_poll_seconds must be at least 1")
        if max_poll_seconds < min_poll_seconds:
            raise ValueError("max_poll_seconds must not be below min_poll_seconds")
        if min(jitter, reserve) < 0 or jitter + reserve >= 1:
            raise ValueError("jitter and reserve are shares of a wait that add up to below 1")
        if hint_stretch < 1 or not 0 <= hint_margin < 1:
            raise ValueError("hint_stretch is at least 1 and hint_margin a share below 1")
        setter = object.__setattr__
        setter(self, "base_seconds", base_seconds)
        setter(self, "min_poll_seconds", min_poll_seconds)
        setter(self, "max_poll_seconds", max_poll_seconds)
        setter(self, "jitter", jitter)
        setter(self, "reserve", reserve)
        setter(self, "hint_stretch", hint_stretch)
        setter(self, "hint_margin", hint_margin)
        setter(self, "min_progress_step", min_progress_step)

    def _values(self) -> tuple[float, ...]:
        return tuple(getattr(self, name) for name in _POLICY_FIELDS)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"PollPolicy is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"PollPolicy is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PollPolicy):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in _POLICY_FIELDS)
        return f"PollPolicy({fields})"

    def replace(
        self,
        *,
        base_seconds: int | None = None,
        min_poll_seconds: int | None = None,
        max_poll_seconds: int | None = None,
    ) -> PollPolicy:
        """This policy with another base or bounds, checked as a new one is."""
        return PollPolicy(
            base_seconds=self.base_seconds if base_seconds is None else base_seconds,
            min_poll_seconds=self.min_poll_seconds
            if min_poll_seconds is None
            else min_poll_seconds,
            max_poll_seconds=self.max_poll_seconds
            if max_poll_seconds is None
            else max_poll_seconds,
            jitter=self.jitter,
            reserve=self.reserve,
            hint_stretch=self.hint_stretch,
            hint_margin=self.hint_margin,
            min_progress_step=self.min_progress_step,
        )

    def lag_bound(self, age: float) -> float:
        """The detection lag allowed for a job that ends at `age` seconds (or later)."""
        return max(float(self.base_seconds), LAG_FRACTION * age)

    def predicted_end(self, age: float, hints: JobHints | None) -> float | None:
        """The age at which the hints say the job ends; None when they say nothing usable.

        With two predictions (Pixxel gives an estimate and a progress), the earlier one is
        taken: stretching less is the safe side of a wrong prediction.
        """
        if hints is None:
            return None
        predictions: list[float] = []
        estimate = hints.estimated_duration_seconds
        if estimate is not None and estimate > age:
            predictions.append(float(estimate))
        progress, origin, origin_age = (
            hints.progress,
            hints.progress_origin,
            hints.progress_origin_age,
        )
        if (
            progress is not None
            and origin is not None
            and origin_age is not None
            and age > origin_age
            and progress < 1.0
            and progress - origin >= self.min_progress_step
        ):
            rate = (progress - origin) / (age - origin_age)
            predictions.append(age + (1.0 - progress) / rate)
        return min(predictions) if predictions else None

    def decide(
        self,
        *,
        age: float,
        until_deadline: float | None = None,
        hints: JobHints | None = None,
        draw: float = 0.0,
    ) -> PollDecision:
        """The wait before the next poll of a job `age` seconds old that was still running.

        `until_deadline`: seconds left before the job's deadline (the wait never passes it
        by a whole second). `draw`: a uniform random number in [0, 1) for the jitter.
        """
        age = max(0.0, age)
        bound = self.lag_bound(age)
        wait = bound
        reason: WaitReason = "age"
        predicted = self.predicted_end(age, hints)
        if predicted is not None:
            # Land where the prediction stops being trusted; never stretch past the multiple
            # of the bound that a wrong prediction is allowed to cost.
            room = predicted * (1.0 - self.hint_margin) - age
            if room > bound:
                wait = min(room, self.hint_stretch * bound)
                reason = "hint"
        wait *= 1.0 - self.reserve - self.jitter * min(max(draw, 0.0), 1.0)
        if wait > self.max_poll_seconds:
            wait, reason = float(self.max_poll_seconds), "max"
        if wait < self.min_poll_seconds:
            wait, reason = float(self.min_poll_seconds), "min"
        seconds = math.floor(wait)
        if until_deadline is not None:
            remaining = math.ceil(until_deadline)
            if remaining < seconds:
                seconds, reason = remaining, "deadline"
        return PollDecision(
            wait_seconds=max(1, seconds),
            reason=reason,
            lag_bound_seconds=math.ceil(bound),
            predicted_end_age=predicted,
        )

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
from dataclasses import dataclass
from typing import Literal

# The detection lag a job of running time T is allowed: max(base, LAG_FRACTION * T).
LAG_FRACTION = 0.1

WaitReason = Literal["age", "hint", "min", "max", "deadline"]


@dataclass(frozen=True)
class JobHints:
    """What the provider told about the job's remaining time, at one poll.

    Ages are seconds since the job was created. `progress_origin` is the progress first
    seen while the job was running and `progress_origin_age` when: with the current
    progress they give the job's rate (deepset's executed / total requests over time).
    """

    progress: float | None = None
    estimated_duration_seconds: float | None = None
    progress_origin: float | None = None
    progress_origin_age: float | None = None


@dataclass(frozen=True)
class PollDecision:
    """The wait before the next poll, why, and the lag it keeps for a job ending meanwhile."""

    wait_seconds: int
    reason: WaitReason
    lag_bound_seconds: int
    predicted_end_age: float | None = None


@dataclass(frozen=True)
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
    """

    base_seconds: int = 30
    min_poll_seconds: int = 1
    max_poll_seconds: int = 300
    jitter: float = 0.05
    reserve: float = 0.02
    hint_stretch: float = 3.0
    hint_margin: float = 0.25
    min_progress_step: float = 0.05

    def __post_init__(self) -> None:
        if self.base_seconds < 1 or self.min_poll_seconds < 1:
            raise ValueError("base_seconds and min_poll_seconds must be at least 1")
        if self.max_poll_seconds < self.min_poll_seconds:
            raise ValueError("max_poll_seconds must not be below min_poll_seconds")
        if min(self.jitter, self.reserve) < 0 or self.jitter + self.reserve >= 1:
            raise ValueError("jitter and reserve are shares of a wait that add up to below 1")
        if self.hint_stretch < 1 or not 0 <= self.hint_margin < 1:
            raise ValueError("hint_stretch is at least 1 and hint_margin a share below 1")

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

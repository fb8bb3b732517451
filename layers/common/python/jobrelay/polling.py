"""PollJobStatus's decisions: one provider GET per round, the normalized status, the
deadline, and the wait before the next round; at the deadline, the remote cancel."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from jobrelay.errors import JobNotFound, ProviderProtocolError, ProviderUnavailable
from jobrelay.models import ErrorInfo, JobRef, JobStatus, PollResult, ProviderName, TrackerState
from jobrelay.observability import logger
from jobrelay.providers import Provider


def next_poll_seconds(job: JobRef, now: datetime) -> int:
    """The configured interval, never waiting past the deadline (so it is noticed on time)."""
    remaining = math.ceil((job.deadline_at - now).total_seconds())
    return max(1, min(job.poll_interval_seconds, remaining))


@dataclass
class JobPoller:
    provider_for: Callable[[ProviderName], Provider]
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def poll(self, state: TrackerState) -> TrackerState:
        job = state.job
        provider = self.provider_for(job.provider)
        try:
            report = provider.get_status(job)
        except (ProviderUnavailable, ProviderProtocolError) as exc:
            now = self.clock()
            if now < job.deadline_at:
                raise  # the definition retries with backoff
            # Past the deadline a provider outage must not keep the tracker going forever.
            logger.warning("provider unavailable at the deadline", error=exc.message)
            result = state.poll.model_copy(
                update={
                    "deadline_passed": True,
                    "terminal": False,
                    "next_poll_seconds": 0,
                    "polls": state.poll.polls + 1,
                    "polled_at": now,
                    "error": ErrorInfo(code=exc.code, message=exc.message, retryable=True),
                }
            )
            return TrackerState(job=job, poll=result)
        except JobNotFound as exc:
            result = PollResult(
                status=JobStatus.FAILED,
                raw_status=None,
                terminal=True,
                polls=state.poll.polls + 1,
                polled_at=self.clock(),
                error=ErrorInfo(code=exc.code, message=exc.message),
            )
            logger.warning("tracked job vanished at the provider")
            return TrackerState(job=job, poll=result)
        now = self.clock()
        terminal = report.status.terminal
        deadline_passed = not terminal and now >= job.deadline_at
        result = PollResult(
            status=report.status,
            raw_status=report.raw_status,
            terminal=terminal,
            deadline_passed=deadline_passed,
            next_poll_seconds=0 if terminal or deadline_passed else next_poll_seconds(job, now),
            polls=state.poll.polls + 1,
            polled_at=now,
            progress=report.progress,
            details=report.details,
            error=report.error,
        )
        logger.info(
            "job polled",
            status=report.status,
            raw_status=report.raw_status,
            next_poll_seconds=result.next_poll_seconds,
            deadline_passed=deadline_passed,
        )
        return TrackerState(job=job, poll=result)

    def cancel(self, state: TrackerState) -> TrackerState:
        """At the deadline: report the job's own end if it just ended, else stop it remotely."""
        job = state.job
        provider = self.provider_for(job.provider)
        polled = self.poll(state)
        if polled.poll.terminal:
            return polled
        cancelled = provider.cancel(job) if provider.can_cancel else False
        logger.info("deadline passed", cancelled_remotely=cancelled, can_cancel=provider.can_cancel)
        result = polled.poll.model_copy(
            update={
                "status": JobStatus.TIMED_OUT,
                "terminal": True,
                "deadline_passed": True,
                "next_poll_seconds": 0,
                "cancelled_remotely": cancelled,
            }
        )
        return TrackerState(job=job, poll=result)

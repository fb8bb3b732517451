"""The poll round: status, deadline, next wait, and the cancel at the deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobrelay.errors import JobNotFound
from jobrelay.models import JobRef, JobStatus, PollResult, StatusReport, TrackerState
from jobrelay.polling import JobPoller, next_poll_seconds
from jobrelay.providers.matatika import MatatikaProvider

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class ScriptedProvider(MatatikaProvider):
    """A provider answering from a script; subclasses the real adapter so mypy checks it."""

    def __init__(self, *reports: StatusReport | Exception, can_cancel: bool = True) -> None:
        self.reports = list(reports)
        self.cancelled: list[str] = []
        self.can_cancel = can_cancel  # type: ignore[misc]

    def get_status(self, job: JobRef) -> StatusReport:
        answer = self.reports.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def cancel(self, job: JobRef) -> bool:
        self.cancelled.append(job.remote_job_id)
        return True


def tracker(deadline_minutes: float = 60, interval: int = 30) -> TrackerState:
    job = JobRef(
        request_id="r",
        provider="matatika",
        remote_job_id="mj",
        created_at=T0,
        deadline_at=T0 + timedelta(minutes=deadline_minutes),
        poll_interval_seconds=interval,
    )
    return TrackerState(job=job, poll=PollResult(status=JobStatus.QUEUED, polls=2))


def poller(provider: ScriptedProvider, now: datetime) -> JobPoller:
    return JobPoller(provider_for=lambda name: provider, clock=lambda: now)


def running() -> StatusReport:
    return StatusReport(status=JobStatus.RUNNING, raw_status="RUNNING")


def test_running_job_waits_the_interval():
    result = poller(ScriptedProvider(running()), T0 + timedelta(minutes=1)).poll(tracker())
    assert result.poll.status is JobStatus.RUNNING
    assert not result.poll.terminal
    assert not result.poll.deadline_passed
    assert result.poll.next_poll_seconds == 30
    assert result.poll.polls == 3


def test_wait_never_passes_the_deadline():
    now = T0 + timedelta(minutes=60) - timedelta(seconds=7)
    assert next_poll_seconds(tracker().job, now) == 7
    assert next_poll_seconds(tracker().job, T0 + timedelta(hours=2)) == 1


def test_terminal_status_ends_tracking():
    done = StatusReport(status=JobStatus.SUCCEEDED, raw_status="COMPLETE")
    result = poller(ScriptedProvider(done), T0).poll(tracker())
    assert result.poll.terminal
    assert result.poll.next_poll_seconds == 0


def test_deadline_passed_is_flagged_for_the_cancel_step():
    result = poller(ScriptedProvider(running()), T0 + timedelta(hours=1)).poll(tracker())
    assert result.poll.deadline_passed
    assert not result.poll.terminal


def test_vanished_job_ends_failed():
    result = poller(ScriptedProvider(JobNotFound("gone")), T0).poll(tracker())
    assert result.poll.status is JobStatus.FAILED
    assert result.poll.terminal
    assert result.poll.error is not None
    assert result.poll.error.code == "JOB_NOT_FOUND"


def test_cancel_stops_the_job_and_ends_timed_out():
    provider = ScriptedProvider(running())
    result = poller(provider, T0 + timedelta(hours=1)).cancel(tracker())
    assert provider.cancelled == ["mj"]
    assert result.poll.status is JobStatus.TIMED_OUT
    assert result.poll.terminal
    assert result.poll.cancelled_remotely is True


def test_cancel_reports_the_jobs_own_end_when_it_just_finished():
    provider = ScriptedProvider(StatusReport(status=JobStatus.SUCCEEDED, raw_status="COMPLETE"))
    result = poller(provider, T0 + timedelta(hours=1)).cancel(tracker())
    assert provider.cancelled == []
    assert result.poll.status is JobStatus.SUCCEEDED


def test_cancel_where_the_provider_cannot_only_stops_tracking():
    provider = ScriptedProvider(running(), can_cancel=False)
    result = poller(provider, T0 + timedelta(hours=1)).cancel(tracker())
    assert provider.cancelled == []
    assert result.poll.status is JobStatus.TIMED_OUT
    assert result.poll.cancelled_remotely is False


def test_provider_outage_before_the_deadline_is_raised_for_the_retry():
    import pytest
    from jobrelay.errors import ProviderUnavailable

    with pytest.raises(ProviderUnavailable):
        poller(ScriptedProvider(ProviderUnavailable("down")), T0).poll(tracker())


def test_provider_outage_past_the_deadline_goes_to_the_cancel_step():
    from jobrelay.errors import ProviderUnavailable

    down = ScriptedProvider(ProviderUnavailable("down"), ProviderUnavailable("down"))
    result = poller(down, T0 + timedelta(hours=2)).poll(tracker())
    assert result.poll.deadline_passed
    assert not result.poll.terminal
    assert result.poll.error is not None
    assert result.poll.error.code == "PROVIDER_UNAVAILABLE"
    ended = poller(down, T0 + timedelta(hours=2)).cancel(result)
    assert ended.poll.status is JobStatus.TIMED_OUT

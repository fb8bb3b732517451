"""The poll round: status, deadline, next wait (the poll policy with hints and per-request
bounds), continuing as a new execution, the outage round, and the cancel at the deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from jobrelay.errors import JobNotFound, ProviderUnavailable
from jobrelay.models import (
    ErrorInfo,
    JobRef,
    JobStatus,
    PollResult,
    StatusReport,
    TrackerState,
    execution_name,
)
from jobrelay.poll_policy import PollPolicy
from jobrelay.polling import JobPoller, decide_wait, default_policy, policy_for
from jobrelay.providers.http import ProviderHttp
from jobrelay.providers.matatika import MatatikaProvider
from jobrelay.secrets import StaticKey
from jobrelay.settings import settings_from_env

from tests.fakes import MemoryStarter

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _unreachable(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"a scripted provider sent {request.method} {request.url}")


class ScriptedProvider(MatatikaProvider):
    """A provider answering from a script; subclasses the real adapter so mypy checks it."""

    def __init__(self, *reports: StatusReport | Exception, can_cancel: bool = True) -> None:
        # The real adapter's wiring, on a transport that refuses every request: a scripted
        # answer never reaches it.
        http = ProviderHttp(
            httpx.Client(transport=httpx.MockTransport(_unreachable)), provider="matatika"
        )
        super().__init__(http, "https://app.matatika.com", StaticKey("unused"))
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


def tracker(deadline_minutes: float = 60, interval: int = 30, **job: object) -> TrackerState:
    ref = JobRef.model_validate(
        {
            "request_id": "r",
            "provider": "matatika",
            "remote_job_id": "mj",
            "created_at": T0,
            "deadline_at": T0 + timedelta(minutes=deadline_minutes),
            "poll_interval_seconds": interval,
            **job,
        }
    )
    return TrackerState(job=ref, poll=PollResult(status=JobStatus.QUEUED, polls=2))


# An upper bound out of the way (the default, 300 s, is test_poll_policy's), so the waits
# show the age and hint rules.
UNBOUNDED = PollPolicy(max_poll_seconds=86_400)


def poller(provider: ScriptedProvider, now: datetime, **options) -> JobPoller:
    """A poller at a fixed instant, without jitter (draw 0: the longest wait)."""
    options.setdefault("policy", UNBOUNDED)
    return JobPoller(
        provider_for=lambda name: provider, clock=lambda: now, draw=lambda: 0.0, **options
    )


def running() -> StatusReport:
    return StatusReport(status=JobStatus.RUNNING, raw_status="RUNNING")


def test_young_running_job_waits_about_the_interval():
    result = poller(ScriptedProvider(running()), T0 + timedelta(minutes=1)).poll(tracker())
    assert result.poll.status is JobStatus.RUNNING
    assert not result.poll.terminal
    assert not result.poll.deadline_passed
    assert result.poll.next_poll_seconds == 29  # the interval less the round's reserve
    assert result.poll.lag_bound_seconds == 30
    assert result.poll.polls == 3
    assert result.poll.rounds == 1


def test_older_running_job_waits_a_tenth_of_its_age():
    state = tracker(deadline_minutes=24 * 60)
    result = poller(ScriptedProvider(running()), T0 + timedelta(hours=2)).poll(state)
    assert result.poll.next_poll_seconds == 705  # 10% of 7200 s, less the 2% reserve
    assert result.poll.lag_bound_seconds == 720


def test_jitter_spreads_the_waits_of_trackers_polled_together():
    state = tracker(deadline_minutes=24 * 60)
    draws = iter([0.0, 0.25, 0.5, 0.75])
    spread = JobPoller(
        provider_for=lambda name: ScriptedProvider(running()),
        clock=lambda: T0 + timedelta(hours=2),
        draw=lambda: next(draws),
        policy=UNBOUNDED,
    )
    waits = {spread.poll(state).poll.next_poll_seconds for _ in range(4)}
    assert len(waits) == 4
    assert max(waits) <= 705


def test_request_bounds_override_the_configured_ones():
    state = tracker(deadline_minutes=24 * 60, max_poll_seconds=120)
    result = poller(ScriptedProvider(running()), T0 + timedelta(hours=2)).poll(state)
    assert result.poll.next_poll_seconds == 120


def test_a_request_minimum_above_the_configured_maximum_wins():
    job = tracker(min_poll_seconds=900).job
    policy = policy_for(job, PollPolicy(max_poll_seconds=600))
    assert (policy.min_poll_seconds, policy.max_poll_seconds) == (900, 900)
    assert policy.base_seconds == 30


def test_configured_bounds_come_from_settings():
    policy = default_policy(settings_from_env({"MIN_POLL_SECONDS": "5", "MAX_POLL_SECONDS": "900"}))
    assert (policy.min_poll_seconds, policy.max_poll_seconds) == (5, 900)
    crossed = default_policy(
        settings_from_env({"MIN_POLL_SECONDS": "60", "MAX_POLL_SECONDS": "30"})
    )
    assert crossed.max_poll_seconds == 60


def test_provider_estimate_stretches_the_wait():
    # Given a Pixxel-like job that says it takes 6 hours, polled at 1 hour
    estimate = StatusReport(
        status=JobStatus.RUNNING, raw_status="running", estimated_duration_seconds=6 * 3600
    )
    state = tracker(deadline_minutes=24 * 60)
    result = poller(ScriptedProvider(estimate), T0 + timedelta(hours=1)).poll(state)
    # Then the wait is three lag bounds (3 x 360 s, less the reserve), not one
    assert result.poll.next_poll_seconds == 1058


def test_progress_origin_is_kept_from_the_first_running_poll():
    # Given a deepset-like job first seen running at 10% after 10 minutes
    first = StatusReport(status=JobStatus.RUNNING, raw_status="STARTED", progress=0.1)
    later = StatusReport(status=JobStatus.RUNNING, raw_status="STARTED", progress=0.3)
    state = tracker(deadline_minutes=24 * 60)
    seen = poller(ScriptedProvider(first), T0 + timedelta(minutes=10)).poll(state)
    assert seen.poll.progress_origin == 0.1
    assert seen.poll.progress_origin_at == T0 + timedelta(minutes=10)
    # When it is at 30% after 30 minutes (the rate predicts the end at 100 minutes)
    again = poller(ScriptedProvider(later), T0 + timedelta(minutes=30)).poll(seen)
    # Then the origin is unchanged and the wait is stretched towards the predicted end
    assert again.poll.progress_origin == 0.1
    assert again.poll.progress_origin_at == T0 + timedelta(minutes=10)
    assert again.poll.next_poll_seconds == 529  # 3 x 180 s, less the reserve


def test_queued_progress_is_no_origin():
    queued = StatusReport(status=JobStatus.QUEUED, raw_status="CREATED", progress=0.0)
    result = poller(ScriptedProvider(queued), T0 + timedelta(minutes=1)).poll(tracker())
    assert result.poll.progress_origin is None


# ------------------------------------------------------------------ continuing as new
def test_after_its_share_of_rounds_the_tracker_continues_as_the_next_generation():
    # Given a tracker whose execution has run one round short of its share
    state = tracker(deadline_minutes=24 * 60)
    state = state.model_copy(update={"poll": state.poll.model_copy(update={"rounds": 4})})
    # When the next round finds the job still running
    result = poller(
        ScriptedProvider(running()), T0 + timedelta(hours=1), rounds_per_execution=5
    ).poll(state)
    # Then the document is the next generation's input: same job, counts carried over
    assert result.poll.continue_as == execution_name("r", 1)
    assert result.job.generation == 1
    assert result.job.remote_job_id == "mj"
    assert result.poll.rounds == 0
    assert result.poll.polls == 3
    assert result.poll.next_poll_seconds == 352  # the wait the new execution starts with


def test_generations_have_distinct_names_within_the_limit():
    names = {execution_name("nightly@2026-11-23T02:00:00Z", g) for g in (0, 1, 2, 99_999)}
    assert len(names) == 4
    assert all(len(name) <= 80 for name in names)
    assert execution_name("x" * 128, 99_999).endswith("-g99999")
    with pytest.raises(ValueError, match="generation"):
        execution_name("r", 100_000)


def test_a_job_that_ends_on_the_last_round_is_published_not_continued():
    done = StatusReport(status=JobStatus.SUCCEEDED, raw_status="COMPLETE")
    state = tracker()
    state = state.model_copy(update={"poll": state.poll.model_copy(update={"rounds": 4})})
    result = poller(ScriptedProvider(done), T0, rounds_per_execution=5).poll(state)
    assert result.poll.terminal
    assert result.poll.continue_as is None
    assert result.job.generation == 0


def test_the_next_generations_first_round_clears_the_hand_over():
    state = tracker(deadline_minutes=24 * 60)
    handed_over = state.model_copy(
        update={
            "job": state.job.model_copy(update={"generation": 1}),
            "poll": state.poll.model_copy(update={"continue_as": execution_name("r", 1)}),
        }
    )
    result = poller(ScriptedProvider(running()), T0 + timedelta(hours=1)).poll(handed_over)
    assert result.poll.continue_as is None
    assert result.poll.rounds == 1
    assert result.job.generation == 1


# ------------------------------------------------------------------ the outage round
def test_an_outage_round_waits_the_outage_wait_without_polling():
    state = tracker(outage_wait_seconds=300)
    result = poller(ScriptedProvider(), T0 + timedelta(minutes=5)).outage(state)
    assert result.poll.next_poll_seconds == 300
    assert result.poll.polls == 2  # nothing was asked of the provider
    assert result.poll.rounds == 1
    assert not result.poll.deadline_passed


def test_an_outage_round_never_waits_past_the_deadline():
    state = tracker(deadline_minutes=60, outage_wait_seconds=300)
    near = poller(ScriptedProvider(), T0 + timedelta(minutes=58)).outage(state)
    past = poller(ScriptedProvider(), T0 + timedelta(minutes=61)).outage(state)
    assert near.poll.next_poll_seconds == 120
    assert past.poll.deadline_passed
    assert past.poll.next_poll_seconds == 0


def test_a_long_outage_also_continues_as_a_new_execution():
    state = tracker(deadline_minutes=24 * 60)
    state = state.model_copy(update={"poll": state.poll.model_copy(update={"rounds": 9})})
    result = poller(ScriptedProvider(), T0 + timedelta(hours=3), rounds_per_execution=10).outage(
        state
    )
    assert result.poll.continue_as == execution_name("r", 1)
    assert result.job.generation == 1


def test_wait_never_passes_the_deadline():
    now = T0 + timedelta(minutes=60) - timedelta(seconds=7)
    assert decide_wait(tracker().job, now).wait_seconds == 7
    assert decide_wait(tracker().job, T0 + timedelta(hours=2)).wait_seconds == 1


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
    with pytest.raises(ProviderUnavailable):
        poller(ScriptedProvider(ProviderUnavailable("down")), T0).poll(tracker())


def test_provider_outage_past_the_deadline_goes_to_the_cancel_step():
    down = ScriptedProvider(ProviderUnavailable("down"), ProviderUnavailable("down"))
    result = poller(down, T0 + timedelta(hours=2)).poll(tracker())
    assert result.poll.deadline_passed
    assert not result.poll.terminal
    assert result.poll.error is not None
    assert result.poll.error.code == "PROVIDER_UNAVAILABLE"
    ended = poller(down, T0 + timedelta(hours=2)).cancel(result)
    assert ended.poll.status is JobStatus.TIMED_OUT


def continued_state() -> TrackerState:
    state = tracker(deadline_minutes=24 * 60)
    state = state.model_copy(update={"poll": state.poll.model_copy(update={"rounds": 4})})
    return poller(
        ScriptedProvider(running()), T0 + timedelta(hours=1), rounds_per_execution=5
    ).poll(state)


def test_continuing_starts_the_next_generation_with_the_document_as_input():
    sfn = MemoryStarter()
    state = continued_state()
    answer = poller(ScriptedProvider(), T0).continue_tracking(state, sfn)
    assert answer["started"] is True
    assert list(sfn.inputs) == [execution_name("r", 1)]
    started = TrackerState.model_validate_json(sfn.inputs[execution_name("r", 1)])
    assert started.job.generation == 1
    assert started.poll.rounds == 0
    assert started.poll.next_poll_seconds == state.poll.next_poll_seconds


def test_continuing_twice_starts_one_execution():
    sfn = MemoryStarter()
    state = continued_state()
    continuing = poller(ScriptedProvider(), T0)
    first = continuing.continue_tracking(state, sfn)
    again = continuing.continue_tracking(state, sfn)
    assert len(sfn.inputs) == 1
    assert first["execution_arn"] == again["execution_arn"]


def test_a_name_already_used_means_the_next_generation_exists():
    sfn = MemoryStarter()
    sfn.inputs[execution_name("r", 1)] = "{}"  # started (and maybe ended) with another input
    answer = poller(ScriptedProvider(), T0).continue_tracking(continued_state(), sfn)
    assert answer["started"] is False
    assert str(answer["execution_arn"]).endswith(execution_name("r", 1))


# ------------------------------------------------------------------ a stop whose answer is lost
class StopScripted(ScriptedProvider):
    """A provider whose stop answers from its own script: True, False or an exception."""

    def __init__(self, *reports: StatusReport | Exception, stop: bool | Exception) -> None:
        super().__init__(*reports)
        self.stop = stop

    def cancel(self, job: JobRef) -> bool:
        self.cancelled.append(job.remote_job_id)
        if isinstance(self.stop, Exception):
            raise self.stop
        return self.stop


def stopped() -> StatusReport:
    # as the Matatika adapter reports a STOPPED it did not see jobrelay cause
    return StatusReport(
        status=JobStatus.CANCELLED,
        raw_status="STOPPED",
        details={"stopped_by": "provider", "attempt": 1},
    )


def test_cancel_whose_answer_was_lost_looks_and_reports_the_job_stopped():
    # Given a stop that timed out at the deadline, though it reached the provider
    provider = StopScripted(running(), stopped(), stop=ProviderUnavailable("read timeout"))
    # When the cancel step runs
    result = poller(provider, T0 + timedelta(hours=1)).cancel(tracker())
    # Then the job is looked at, and the event says it was stopped remotely
    assert result.poll.status is JobStatus.TIMED_OUT
    assert result.poll.cancelled_remotely is True
    assert result.poll.raw_status == "STOPPED"
    assert result.poll.details["stop_answer"] == "lost"
    assert "stopped_by" not in result.poll.details  # not the provider's own stop
    assert result.poll.details["attempt"] == 1


def test_cancel_refused_because_the_job_no_longer_runs_reports_it_stopped():
    # Given a stop sent again after a lost answer, refused: the first one stopped the job
    provider = StopScripted(running(), stopped(), stop=False)
    result = poller(provider, T0 + timedelta(hours=1)).cancel(tracker())
    assert result.poll.status is JobStatus.TIMED_OUT
    assert result.poll.cancelled_remotely is True
    assert result.poll.details["stop_answer"] == "refused"


def test_cancel_whose_answer_was_lost_while_the_job_still_runs_is_raised_for_the_retry():
    provider = StopScripted(running(), running(), stop=ProviderUnavailable("answered 500"))
    with pytest.raises(ProviderUnavailable):
        poller(provider, T0 + timedelta(hours=1)).cancel(tracker())


def test_cancel_whose_answer_was_lost_and_the_job_unreadable_is_raised_for_the_retry():
    down = ProviderUnavailable("down")
    provider = StopScripted(running(), down, stop=ProviderUnavailable("answered 502"))
    with pytest.raises(ProviderUnavailable):
        poller(provider, T0 + timedelta(hours=1)).cancel(tracker())


def test_a_job_that_ended_on_its_own_as_the_stop_was_lost_reports_its_end():
    done = StatusReport(status=JobStatus.SUCCEEDED, raw_status="COMPLETE")
    provider = StopScripted(running(), done, stop=ProviderUnavailable("read timeout"))
    result = poller(provider, T0 + timedelta(hours=1)).cancel(tracker())
    assert result.poll.status is JobStatus.SUCCEEDED
    assert result.poll.terminal
    assert result.poll.details["stop_answer"] == "lost"


def test_an_acknowledged_stop_says_jobrelay_stopped_the_job():
    provider = StopScripted(running(), stop=True)
    result = poller(provider, T0 + timedelta(hours=1)).cancel(tracker())
    assert result.poll.cancelled_remotely is True
    assert result.poll.details["stopped_by"] == "jobrelay"


# ------------------------------------------------------------------ Matatika retries
def retry_due(recheck: int = 15) -> StatusReport:
    # as the Matatika adapter reports an ERROR with attempts left, its retry still due
    return StatusReport(
        status=JobStatus.RUNNING,
        raw_status="ERROR",
        details={"attempt": 1, "max_attempts": 2, "retry_pending": True},
        error=ErrorInfo(code="JOB_FAILED", message="tap failed (attempt 1 of 2)"),
        recheck_seconds=recheck,
    )


def test_an_error_whose_retry_is_due_is_looked_at_again_soon():
    # Given an old job (the policy alone would wait about 12 minutes)
    state = tracker(deadline_minutes=24 * 60)
    result = poller(ScriptedProvider(retry_due(15)), T0 + timedelta(hours=2)).poll(state)
    # Then it is not published failed, and the next look comes within the recheck
    assert not result.poll.terminal
    assert result.poll.status is JobStatus.RUNNING
    assert result.poll.raw_status == "ERROR"
    assert result.poll.next_poll_seconds == 15


def test_the_deadline_while_a_retry_is_due_ends_failed_with_the_attempt():
    provider = ScriptedProvider(retry_due())
    result = poller(provider, T0 + timedelta(hours=1)).cancel(tracker())
    assert provider.cancelled == []  # nothing runs to stop
    assert result.poll.status is JobStatus.FAILED
    assert result.poll.terminal
    assert result.poll.details["attempt"] == 1
    assert result.poll.error is not None
    assert "deadline passed before the provider's retry" in result.poll.error.message

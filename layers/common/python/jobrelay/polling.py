"""PollJobStatus's decisions: one provider GET per round, the normalized status, the
deadline, the wait before the next round (the poll policy), when the tracker continues as a
new execution, and at the deadline the remote cancel."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple

from jobrelay.errors import JobNotFound, ProviderProtocolError, ProviderUnavailable
from jobrelay.events import cancel_details
from jobrelay.models import (
    ROUNDS_PER_EXECUTION,
    ErrorInfo,
    JobRef,
    JobStatus,
    PollResult,
    ProviderName,
    StatusReport,
    TrackerState,
    execution_name,
)
from jobrelay.observability import logger
from jobrelay.poll_policy import JobHints, PollDecision, PollPolicy
from jobrelay.ports import CancelRecord, TrackerStarter, utc_now
from jobrelay.providers.base import Provider
from jobrelay.providers.pool import ProviderPool
from jobrelay.settings import PollJobStatusSettings, Settings

# The classes here are plain classes and NamedTuples, not dataclasses: making a dataclass
# compiles its methods, about a millisecond of every cold start each.

# Stops sent at a cancel while the job still runs (each with the HTTP client's own retries),
# the second only if the first failed within this time: three 10 s read timeouts and a look
# already take most of TrackerEnded's 60 s and all of PollJobStatus's 30 s.
CANCEL_STOP_ATTEMPTS = 2
CANCEL_STOP_RETRY_WITHIN_SECONDS = 10.0


def default_policy(config: Settings) -> PollPolicy:
    """The configured bounds of every wait (a request's `tracking` overrides them per job)."""
    low = config.min_poll_seconds
    return PollPolicy(min_poll_seconds=low, max_poll_seconds=max(low, config.max_poll_seconds))


def policy_for(job: JobRef, defaults: PollPolicy | None = None) -> PollPolicy:
    """The policy of this job: its base interval, and its request's bounds over the defaults.

    A request's own bound wins over the configured one; if the two bounds then cross, the
    request's decides (a request asking for `min_poll_seconds: 600` gets 600-second waits).
    """
    base = defaults or PollPolicy()
    low = job.min_poll_seconds or base.min_poll_seconds
    high = job.max_poll_seconds or base.max_poll_seconds
    if low > high:
        if job.min_poll_seconds is not None:
            high = low
        else:
            low = high
    return base.replace(
        base_seconds=job.poll_interval_seconds, min_poll_seconds=low, max_poll_seconds=high
    )


def hints_from(job: JobRef, poll: PollResult, report: StatusReport | None) -> JobHints | None:
    """The provider's hints of this round, with the progress origin kept in the document."""
    if report is None:
        return None
    origin_age = None
    if poll.progress_origin_at is not None:
        origin_age = (poll.progress_origin_at - job.created_at).total_seconds()
    return JobHints(
        progress=report.progress,
        estimated_duration_seconds=report.estimated_duration_seconds,
        progress_origin=poll.progress_origin,
        progress_origin_age=origin_age,
    )


def decide_wait(
    job: JobRef,
    now: datetime,
    *,
    policy: PollPolicy | None = None,
    hints: JobHints | None = None,
    draw: float = 0.0,
) -> PollDecision:
    """The policy's decision for `job` polled at `now`, never waiting past the deadline."""
    return policy_for(job, policy).decide(
        age=(now - job.created_at).total_seconds(),
        until_deadline=(job.deadline_at - now).total_seconds(),
        hints=hints,
        draw=draw,
    )


def _no_cancel(request_id: str) -> CancelRecord | None:
    return None


class JobPoller:
    """One tracker round's decisions for a job reached through `provider_for`."""

    def __init__(
        self,
        provider_for: Callable[[ProviderName], Provider],
        clock: Callable[[], datetime] = utc_now,
        policy: PollPolicy | None = None,
        rounds_per_execution: int = ROUNDS_PER_EXECUTION,
        draw: Callable[[], float] = random.random,
        # The cancel asked for a request, read once a round (a cancel that arrived while the
        # create was in flight, before there was an execution to stop, is found here).
        cancel_of: Callable[[str], CancelRecord | None] = _no_cancel,
    ) -> None:
        self.provider_for = provider_for
        self.clock = clock
        self.policy = policy if policy is not None else PollPolicy()
        self.rounds_per_execution = rounds_per_execution
        self.draw = draw
        self.cancel_of = cancel_of

    def poll(self, state: TrackerState) -> TrackerState:
        """One round: GET the job, decide the next wait, and whether to continue anew; or,
        when a cancel was asked for the request, end it (`cancelled`)."""
        cancel = self.cancel_of(state.job.request_id)
        if cancel is not None:
            return self.cancelled(state, cancel)
        return self._continued(self._poll(state))

    def outage(self, state: TrackerState) -> TrackerState:
        """A round whose poll failed through every retry: no GET, wait the outage wait.

        Counted as a round like any other, so a long provider outage also continues as a new
        execution before the history limit; past the deadline it goes to the cancel step.
        """
        job, now = state.job, self.clock()
        past_deadline = now >= job.deadline_at
        until_deadline = math.ceil((job.deadline_at - now).total_seconds())
        wait = 0 if past_deadline else max(1, min(job.outage_wait_seconds, until_deadline))
        result = state.poll.model_copy(
            update={
                "deadline_passed": past_deadline,
                "terminal": False,
                "next_poll_seconds": wait,
                "rounds": state.poll.rounds + 1,
                "continue_as": None,
            }
        )
        logger.warning(
            "provider unavailable through every retry; waiting",
            next_poll_seconds=result.next_poll_seconds,
            deadline_passed=past_deadline,
        )
        return self._continued(TrackerState(job=job, poll=result))

    def _poll(self, state: TrackerState) -> TrackerState:
        job = state.job
        provider = self.provider_for(job.connection_name)
        rounds = state.poll.rounds + 1
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
                    "rounds": rounds,
                    "polled_at": now,
                    "continue_as": None,
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
                rounds=rounds,
                polled_at=self.clock(),
                error=ErrorInfo(code=exc.code, message=exc.message),
            )
            logger.warning("tracked job vanished at the provider")
            return TrackerState(job=job, poll=result)
        now = self.clock()
        terminal = report.status.terminal
        deadline_passed = not terminal and now >= job.deadline_at
        origin, origin_at = state.poll.progress_origin, state.poll.progress_origin_at
        if origin is None and report.status is JobStatus.RUNNING and report.progress is not None:
            origin, origin_at = report.progress, now
        result = PollResult(
            status=report.status,
            raw_status=report.raw_status,
            terminal=terminal,
            deadline_passed=deadline_passed,
            polls=state.poll.polls + 1,
            rounds=rounds,
            polled_at=now,
            progress=report.progress,
            details=report.details,
            error=report.error,
            progress_origin=origin,
            progress_origin_at=origin_at,
        )
        decision = None
        if not (terminal or deadline_passed):
            decision = decide_wait(
                job,
                now,
                policy=self.policy,
                hints=hints_from(job, result, report),
                draw=self.draw(),
            )
            result.next_poll_seconds = decision.wait_seconds
            result.lag_bound_seconds = decision.lag_bound_seconds
            if report.recheck_seconds is not None:
                result.next_poll_seconds = min(result.next_poll_seconds, report.recheck_seconds)
        logger.info(
            "job polled",
            status=report.status,
            raw_status=report.raw_status,
            progress=report.progress,
            next_poll_seconds=result.next_poll_seconds,
            wait_reason=decision.reason if decision else None,
            predicted_end_age=round(decision.predicted_end_age)
            if decision and decision.predicted_end_age is not None
            else None,
            deadline_passed=deadline_passed,
        )
        return TrackerState(job=job, poll=result)

    def _continued(self, state: TrackerState) -> TrackerState:
        """Hand a tracker that has run its share of rounds over to a new execution.

        The returned document is the next execution's input: the next generation, its round
        count reset, and `continue_as` naming it. The current execution starts it and ends
        without publishing; the new one begins with this round's wait, so no poll repeats.
        """
        job, poll = state.job, state.poll
        if poll.terminal or poll.deadline_passed or poll.rounds < self.rounds_per_execution:
            return state
        generation = job.generation + 1
        name = execution_name(job.request_id, generation)
        logger.info(
            "tracker continues as a new execution", generation=generation, rounds=poll.rounds
        )
        return TrackerState(
            job=job.model_copy(update={"generation": generation}),
            poll=poll.model_copy(update={"rounds": 0, "continue_as": name}),
        )

    @staticmethod
    def continue_tracking(state: TrackerState, starter: TrackerStarter) -> dict[str, object]:
        """Start the execution `state.poll.continue_as` names, with `state` as its input.

        Safe to repeat: Step Functions answers a second start with the same name and input
        with the running execution, and a name already used (the next generation has even
        ended) means the job is followed there; either way the caller may end.
        """
        arn, started = starter.start(state)
        logger.info("tracker continued", execution_arn=arn, execution_started=started)
        return {"execution_arn": arn, "started": started}

    def cancel(self, state: TrackerState) -> TrackerState:
        """At the deadline: report the job's own end if it just ended, else stop it remotely
        and end `timed_out`."""
        polled = self._poll(state)
        if polled.poll.terminal:
            return polled
        if polled.poll.details.get("retry_pending"):
            return _failed_awaiting_retry(polled)
        return self._stop(polled, Ending(JobStatus.TIMED_OUT, deadline_passed=True))

    def cancelled(self, state: TrackerState, cancel: CancelRecord) -> TrackerState:
        """Someone asked to cancel the request: report the job's own end if it has ended,
        else stop it where the provider can and end `cancelled`, saying who asked and why.

        The request stops being tracked whatever the provider answers: a provider that
        cannot be reached, or has no cancel, leaves a job that may still run, and the event
        says so (`cancelled_remotely: false`).
        """
        ending = Ending(JobStatus.CANCELLED, details={"cancel": cancel_details(cancel)})
        try:
            polled = self._poll(state)
        except (ProviderUnavailable, ProviderProtocolError) as exc:
            logger.warning("job unreadable at its cancel", error=exc.message)
            return _ended(state, ending, cancelled=False, cancel_error=exc.message)
        if polled.poll.status is JobStatus.CANCELLED:
            # Found stopped: most likely by this cancel's own stop, sent from the other path
            # that read it (the poll round in flight when its tracker was stopped, or an
            # earlier delivery of TrackerEnded). The cancel is done; the event says so.
            details = {k: v for k, v in polled.poll.details.items() if k != "stopped_by"}
            seen = polled.poll.model_copy(update={"details": details, "error": None})
            stopped = TrackerState(job=polled.job, poll=seen)
            return _ended(stopped, ending, cancelled=True, found_stopped=True)
        if polled.poll.terminal:
            return polled
        return self._stop(polled, ending)

    def tracker_failed(self, state: TrackerState, *, status: str, cause: str) -> TrackerState:
        """A tracker execution that failed or timed out before publishing ends `failed`: the
        job is looked at once, and its own end is reported if it has one. The job is left
        running (jobrelay's failure is no reason to stop someone's job), and the event says
        it may still run."""
        try:
            polled = self._poll(state)
        except (ProviderUnavailable, ProviderProtocolError) as exc:
            logger.warning("job unreadable after its tracker failed", error=exc.message)
        else:
            if polled.poll.terminal:
                return polled
            state = polled
        poll = state.poll.model_copy(
            update={
                "status": JobStatus.FAILED,
                "terminal": True,
                "next_poll_seconds": 0,
                "error": ErrorInfo(
                    code=f"TRACKER_{status}",
                    message=(cause or f"the tracker execution ended {status}")[:1000],
                ),
                "details": {
                    **state.poll.details,
                    "tracker_status": status,
                    "remote_job_may_still_run": True,
                },
            }
        )
        logger.warning("tracker ended without an outcome", tracker_status=status)
        return TrackerState(job=state.job, poll=poll)

    def _stop(self, polled: TrackerState, ending: Ending) -> TrackerState:
        """Stop the job where the provider can, and end as `ending` says.

        A stop whose answer was lost (a timeout, a 5xx) or that was refused may well have
        stopped the job (a stop that timed out and was sent again finds the job no longer
        running): the job is looked at before anything is reported, and the event says
        what the provider shows, the job stopped or ended on its own. At the deadline, a job
        still running after a lost answer raises the error, and the definition retries the
        cancel step; a cancel asked for sends the stop once more, then ends tracking with
        what is known.
        """
        job = polled.job
        provider = self.provider_for(job.connection_name)
        if not provider.can_cancel:
            return _ended(polled, ending, cancelled=False)
        # The deadline's stop is retried by the definition (CancelJob's Retry); a cancel's
        # has no retry of its own (TrackerEnded's redelivery comes minutes later, if at all),
        # so a stop that failed fast while the job still runs is sent once more here. One
        # that failed slowly (timeouts through every HTTP attempt) is not: the function's
        # time is better spent publishing the outcome.
        attempts = 1 if ending.deadline_passed else CANCEL_STOP_ATTEMPTS
        started = self.clock()
        for attempt in range(1, attempts + 1):
            try:
                acknowledged = provider.cancel(job)
                break
            except (ProviderUnavailable, ProviderProtocolError) as exc:
                seen = self._look(provider, job)
                if seen is not None and seen.status.terminal:
                    logger.warning("stop answer lost; the job has ended", error=exc.message)
                    return _after_stop(polled, seen, ending, answer="lost")
                if ending.deadline_passed:
                    raise
                spent = (self.clock() - started).total_seconds()
                if attempt == attempts or spent > CANCEL_STOP_RETRY_WITHIN_SECONDS:
                    return _ended(polled, ending, cancelled=False, cancel_error=exc.message)
                logger.warning("stop failed at a cancel; sending it again", error=exc.message)
        if acknowledged:
            return _ended(polled, ending, cancelled=True, stopped_by="jobrelay")
        seen = self._look(provider, job)
        if seen is not None and seen.status.terminal:
            return _after_stop(polled, seen, ending, answer="refused")
        return _ended(polled, ending, cancelled=False)

    def _look(self, provider: Provider, job: JobRef) -> StatusReport | None:
        """The job after a stop that was not acknowledged; None when it cannot be read."""
        try:
            return provider.get_status(job)
        except (ProviderUnavailable, ProviderProtocolError, JobNotFound) as exc:
            logger.warning("job unreadable after its stop", error=exc.message)
            return None


class Ending(NamedTuple):
    """How a stopped job's tracking ends: at its deadline (`timed_out`) or because someone
    asked (`cancelled`), with what the event adds."""

    status: JobStatus
    deadline_passed: bool = False
    details: Mapping[str, Any] = MappingProxyType({})


def _ended(
    polled: TrackerState, ending: Ending, *, cancelled: bool, **details: Any
) -> TrackerState:
    poll = polled.poll
    logger.info(
        "tracking ended by a stop", status=ending.status, cancelled_remotely=cancelled, **details
    )
    result = poll.model_copy(
        update={
            "status": ending.status,
            "terminal": True,
            "deadline_passed": ending.deadline_passed,
            "next_poll_seconds": 0,
            "cancelled_remotely": cancelled,
            "details": {**poll.details, **ending.details, **details},
        }
    )
    return TrackerState(job=polled.job, poll=result)


def _after_stop(
    polled: TrackerState, seen: StatusReport, ending: Ending, *, answer: str
) -> TrackerState:
    """The outcome from the job as it shows after an unacknowledged stop.

    Found stopped: the stop took effect (jobrelay asked; the answer was lost, or the retry
    of a stop whose answer was lost was refused because the job no longer ran). Found
    ended otherwise: it finished on its own, and that is its outcome.
    """
    if seen.status is JobStatus.CANCELLED:
        # Seen after jobrelay's stop: not the provider's own stop the adapter reports.
        details = {k: v for k, v in seen.details.items() if k != "stopped_by"}
        stopped = polled.poll.model_copy(
            update={"raw_status": seen.raw_status, "details": details, "error": None}
        )
        return _ended(
            TrackerState(job=polled.job, poll=stopped), ending, cancelled=True, stop_answer=answer
        )
    result = polled.poll.model_copy(
        update={
            "status": seen.status,
            "raw_status": seen.raw_status,
            "terminal": True,
            "deadline_passed": False,
            "next_poll_seconds": 0,
            "progress": seen.progress,
            "details": {**seen.details, "stop_answer": answer},
            "error": seen.error,
        }
    )
    return TrackerState(job=polled.job, poll=result)


def _failed_awaiting_retry(polled: TrackerState) -> TrackerState:
    """An ERROR whose retry the provider had not started by the deadline ends failed: its
    last attempt's failure is the job's end as far as jobrelay follows it."""
    poll = polled.poll
    error = poll.error or ErrorInfo(code="JOB_FAILED", message="the job ended in error")
    message = f"{error.message}; the deadline passed before the provider's retry started"
    result = poll.model_copy(
        update={
            "status": JobStatus.FAILED,
            "terminal": True,
            "deadline_passed": True,
            "next_poll_seconds": 0,
            "error": error.model_copy(update={"message": message}),
        }
    )
    logger.info("deadline passed awaiting the provider's retry")
    return TrackerState(job=polled.job, poll=result)


class PollService:
    """A ready PollJobStatus: each action opens the invocation's provider pool, runs one
    `JobPoller` step and answers the state machine's next document."""

    def __init__(
        self,
        settings: PollJobStatusSettings,
        policy: PollPolicy,
        starter_for: Callable[[str], TrackerStarter],
        cancel_of: Callable[[str], CancelRecord | None],
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.starter_for = starter_for
        self.cancel_of = cancel_of

    def _run(
        self, step: Callable[[JobPoller, TrackerState], TrackerState], state: TrackerState
    ) -> dict[str, Any]:
        with ProviderPool(self.settings) as pool:
            poller = JobPoller(
                provider_for=pool,
                policy=self.policy,
                rounds_per_execution=self.settings.rounds_per_execution,
                cancel_of=self.cancel_of,
            )
            result = step(poller, state)
        return result.model_dump(mode="json", exclude={"action", "error"})

    def poll(self, state: TrackerState) -> dict[str, Any]:
        return self._run(JobPoller.poll, state)

    def cancel(self, state: TrackerState) -> dict[str, Any]:
        return self._run(JobPoller.cancel, state)

    def outage(self, state: TrackerState) -> dict[str, Any]:
        return self._run(JobPoller.outage, state)

    def continue_tracking(self, state: TrackerState, state_machine_arn: str) -> dict[str, object]:
        """Start the next generation on the state machine that asked (`$$.StateMachine.Id`:
        the function's environment cannot name it without a cycle in the template)."""
        return JobPoller.continue_tracking(state, self.starter_for(state_machine_arn))

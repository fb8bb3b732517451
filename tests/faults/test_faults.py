"""Faults a production system meets, each played through the local stack, and the invariant
checked after each: one outcome per request (or the DLQ with a reason), never two remote jobs.
See `scenarios.py` for the scenarios and `invariant.py` for the checker."""

from __future__ import annotations

import time

import pytest
from jobrelay.aws_limits import DynamoConnectionSlots

from tests.faults.play import FaultRun
from tests.faults.scenarios import CANCELLED_BY, OPERATOR, SCENARIOS, Scenario
from tests.integration.conftest import Harness

# One worker plays the whole suite on its one module-scoped stack (`make test` runs
# pytest-xdist with --dist loadgroup).
pytestmark = [pytest.mark.faults, pytest.mark.xdist_group("faults")]


def param(scenario: Scenario) -> object:
    marks = []
    if scenario.known_bug:
        marks.append(pytest.mark.xfail(strict=True, reason=scenario.known_bug))
    return pytest.param(scenario, id=scenario.id, marks=marks)


@pytest.mark.parametrize("scenario", [param(s) for s in SCENARIOS])
def test_request_under_fault_ends_in_one_outcome_and_at_most_one_job(
    fault_run: FaultRun, scenario: Scenario
):
    result = fault_run.results[scenario.id]
    verdict = result.verdict
    # The invariant: one outcome (or the DLQ with a reason), never two remote jobs
    assert verdict.ok, verdict.problems
    # and the outcome this fault should lead to
    assert verdict.outcome == scenario.expect, verdict.event
    event = verdict.event
    assert event is not None
    if scenario.error_code is not None:
        assert event["data"]["error"]["code"] == scenario.error_code, event["data"]["error"]
    if scenario.expect != "jobrelay.job.rejected":
        assert len(verdict.remote_jobs) == 1
        assert event["data"]["remote_job_id"] == verdict.remote_jobs[0]
    if scenario.creates is not None:
        assert result.creates == scenario.creates
    if scenario.cancelled_remotely is not None:
        assert event["data"]["details"]["cancelled_remotely"] is scenario.cancelled_remotely
    if scenario.steer is not None:
        # the cancel the request ended by: who asked, as the event says
        asked = event["data"]["details"]["cancel"]["requested_by"]
        assert asked == (CANCELLED_BY if scenario.steer == "message" else OPERATOR)
    for name, value in scenario.details.items():
        assert event["data"]["details"].get(name) == value, event["data"]["details"]
    if scenario.reads_pipeline:
        # the lists hid the queued job: reconciliation found it in the pipeline's own view
        assert result.pipeline_views >= 1, "reconciliation never read the pipeline's latest job"
    # and the fault really happened
    if scenario.fault is not None:
        assert result.fault is not None
        assert result.fault.applied >= 1, "the fault never fired: the scenario tested nothing"
    if scenario.listing_fault is not None:
        assert result.listing_fault is not None
        assert result.listing_fault.applied >= 1, "reconciliation never met its listing fault"
    if scenario.call == "aws" and scenario.copies == 1:
        fired = {rid for ids in fault_run.aws_fired.values() for rid in ids}
        assert scenario.request_id in fired


def test_no_outcome_is_lost_and_no_remote_job_is_doubled(fault_run: FaultRun):
    survivable = [s.request_id for s in SCENARIOS if not s.known_bug]
    judged = [key for key in survivable if key in fault_run.report.verdicts]
    verdicts = [fault_run.report.verdicts[key] for key in judged]
    assert sum(v.lost for v in verdicts) == 0
    assert sum(max(0, len(v.remote_jobs) - 1) for v in verdicts) == 0
    fault_run.report.assert_holds(judged)


def test_no_slot_is_left_held_by_a_request_that_had_its_outcome(
    fault_run: FaultRun, fault_stack: Harness
):
    # Every request took a slot of its provider's default connection (limits are on); each
    # one with an outcome freed it, on whatever path it ended (a rejection, a cancel, an
    # operator stop, a failed tracker, a deadline).
    slots = DynamoConnectionSlots(
        fault_stack.stack.functions["CreateJobFunction"].environment["LIMITS_TABLE"]
    )
    with_outcome = {key for key, verdict in fault_run.report.verdicts.items() if verdict.events}
    # A slot is freed just after its outcome is published (TrackerEnded may still be there).
    deadline = time.monotonic() + 15
    while True:
        views = {p: slots.view(p) for p in ("deepset", "pixxel", "matatika")}
        assert all(v is not None for v in views.values()), "a provider's requests took no slot"
        leaked = {p: set(v.held) & with_outcome for p, v in views.items() if v is not None}
        if not any(leaked.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not any(leaked.values()), leaked
    assert all(v is not None and v.waiting == 0 for v in views.values())


def test_matatika_401s_were_answered_by_a_fresh_oauth_token(
    fault_run: FaultRun, fault_stack: Harness
):
    # Every Matatika 401 scenario forced a token exchange beyond the first one
    refreshed = [
        s
        for s in SCENARIOS
        if s.provider == "matatika" and "401" in s.id and s.id in fault_run.results
    ]
    exchanges = [
        r
        for r in fault_stack.emulators["matatika"].requests()
        if r["method"] == "POST" and r["path"] == "/oauth/token" and r["status"] == 200
    ]
    assert len(exchanges) >= 1 + len(refreshed)

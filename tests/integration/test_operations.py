"""Operations: schedule firings, log correlation, metrics and the DLQ workflow, through the
template deployed in moto with the real handlers and the emulators."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from jobrelay_cli.dlq import list_dead_letters, redrive
from jobrelay_cli.schedules import firing, template_schedules
from jobrelay_local.emulators import Fault
from jobrelay_local.runtime import LocalStack

from tests.integration.conftest import Harness, matatika_request, pixxel_request

pytestmark = pytest.mark.integration


def test_a_schedule_firing_delivered_twice_creates_one_job(harness: Harness):
    harness.emulators["matatika"].configure(queued=0.1, duration=0.5)
    schedule = template_schedules()["nightly-matatika-sync"]
    at = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    body = firing(schedule.input, schedule_arn="arn:aws:scheduler:local", at=at)
    harness.send(body, body)  # Scheduler delivers at least once
    harness.deliver_all()
    request_id = "nightly-matatika-sync@2026-11-24T01:00:00Z"
    outcome = harness.wait_outcome(request_id)
    assert outcome["type"] == "jobrelay.job.succeeded"
    assert harness.emulators["matatika"].creates_received() == 1
    assert len(harness.events_for(request_id)) == 1


def test_metrics_emitted_match_the_outcomes(harness: Harness, monkeypatch, capfd):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    harness.emulators["pixxel"].configure_target(
        "wf-bad", outcome="failure", queued=0.1, duration=0.3
    )
    harness.emulators["pixxel"].configure(queued=0.1, duration=0.3)
    harness.send(
        pixxel_request("m-ok"),
        pixxel_request("m-fail", workflow_id="wf-bad"),
        {"request_id": "m-bad", "provider": "pixxel", "params": {}},
    )
    harness.deliver()
    for request_id in ("m-ok", "m-fail", "m-bad"):
        harness.wait_outcome(request_id)
    emitted: dict[tuple[str, str], float] = {}
    # A function prints its metrics just after it publishes: read until the outcomes' are in.
    expected = {("JobsSucceeded", "pixxel"), ("JobsFailed", "pixxel"), ("JobsRejected", "pixxel")}
    deadline = time.monotonic() + 20
    while True:
        for line in capfd.readouterr().out.splitlines():
            if '"_aws"' not in line:
                continue
            blob = json.loads(line)
            if blob.get("request_id") not in {"m-ok", "m-fail", "m-bad"}:
                continue  # another test's stack, still finishing in the background
            for definition in blob["_aws"]["CloudWatchMetrics"]:
                for metric in definition["Metrics"]:
                    key = (metric["Name"], blob.get("provider", ""))
                    values = blob[metric["Name"]]
                    values = values if isinstance(values, list) else [values]
                    emitted[key] = emitted.get(key, 0) + sum(float(v) for v in values)
        if expected <= emitted.keys() or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert emitted[("JobsCreated", "pixxel")] == 2
    assert emitted[("JobsRejected", "pixxel")] == 1
    assert emitted[("JobsSucceeded", "pixxel")] == 1
    assert emitted[("JobsFailed", "pixxel")] == 1
    assert ("RequestToOutcome", "pixxel") in emitted
    assert ("ProviderCallLatency", "pixxel") in emitted


def test_every_log_line_of_a_run_carries_the_request_id(tmp_path: Path):
    log_file = tmp_path / "logs.jsonl"
    local = LocalStack(
        environ={},
        log_file=log_file,
        parameters={"PollIntervalSeconds": "1", "FirstPollSeconds": "0"},
    )
    with local:
        for server in local.emulators.values():
            server.configure(queued=0.1, duration=0.5)
        local.emulators["matatika"].configure_target("pl-broken", outcome="failure")
        local.submit(pixxel_request("log-1"))
        local.submit(matatika_request("log-2", pipeline_id="pl-broken"))
        local.submit({"request_id": "log-3", "provider": "deepset", "params": {}})
        _, still_open = local.wait_for_outcomes(["log-1", "log-2", "log-3"], timeout=60)
        assert not still_open
    lines = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
    assert len(lines) >= 9
    missing = [line for line in lines if not line.get("request_id")]
    assert missing == []
    functions = {line.get("function_name", "").split("-")[1] for line in lines}
    assert {"CreateJobFunction", "PollJobStatusFunction", "PublishOutcomeFunction"} <= functions
    assert {line["request_id"] for line in lines} == {"log-1", "log-2", "log-3"}


def test_dlq_redrive_brings_a_dead_request_back_to_an_outcome():
    local = LocalStack(
        environ={},
        feed_queue=True,
        visibility_timeout=1,
        parameters={"MaxReceiveCount": "2", "PollIntervalSeconds": "1", "FirstPollSeconds": "0"},
    )
    with local:
        stack = local.require_stack()
        sqs = boto3.client("sqs")
        matatika = local.emulators["matatika"]
        matatika.configure(queued=0.1, duration=0.5)
        # Given a provider down for longer than the queue's retries
        outage = matatika.add_fault(Fault(method="POST", path=r"/jobs$", status=[503] * 50))
        local.submit(matatika_request("dead-1"))
        letters = []
        for _ in range(100):
            letters = list_dead_letters(sqs, stack.dlq_url)
            if letters:
                break
            time.sleep(0.2)
        # Then the request sits in the DLQ, with no outcome published
        assert [letter.request_id for letter in letters] == ["dead-1"]
        assert letters[0].redrivable
        assert "maxReceiveCount" in letters[0].reason
        assert local.events() == []
        # When the provider is back and the DLQ is redriven
        matatika.clear_faults()
        assert outage.applied >= 2
        result = redrive(sqs, stack.dlq_url, stack.queue_url)
        assert [letter.request_id for letter in result.redriven] == ["dead-1"]
        # Then the request reaches its outcome, with one remote job
        outcomes, still_open = local.wait_for_outcomes(["dead-1"], timeout=60)
        assert not still_open
        assert outcomes["dead-1"]["type"] == "jobrelay.job.succeeded"
        assert len(matatika.jobs()) == 1
        assert list_dead_letters(sqs, stack.dlq_url) == []


def test_dlq_redrive_leaves_rejected_requests(harness: Harness):
    harness.send({"request_id": "rej-1", "provider": "pixxel", "params": {}})
    harness.deliver()
    result = redrive(harness.sqs, harness.stack.dlq_url, harness.stack.queue_url)
    assert result.redriven == []
    assert [letter.request_id for letter in result.left] == ["rej-1"]
    assert result.left[0].code == "REQUEST_INVALID"
    assert len(harness.dead_letters()) == 1

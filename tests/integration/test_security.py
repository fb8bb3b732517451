"""Nobody let in: no key or token in any log line, metric or event of a full local run."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest
from jobrelay.providers.pool import http_client
from jobrelay.settings import Settings
from jobrelay_local.emulators import Fault
from jobrelay_local.runtime import LocalStack

from tests.integration.conftest import deepset_request, matatika_request, pixxel_request

pytestmark = pytest.mark.integration

KEYS = {
    "deepset": "dsk-SECRET-7f3a9c-deepset",
    "pixxel": "pxk-SECRET-1b2c3d-pixxel",
    "matatika": "mtk-SECRET-9e8d7c-matatika",
}


def test_no_api_key_appears_in_logs_metrics_or_events(tmp_path: Path):
    logs, metrics = tmp_path / "logs.jsonl", tmp_path / "metrics.jsonl"
    local = LocalStack(
        environ={},
        api_keys=KEYS,
        log_file=logs,
        metrics_file=metrics,
        parameters={"PollIntervalSeconds": "1", "FirstPollSeconds": "0", "LogLevel": "DEBUG"},
    )
    with local:
        for server in local.emulators.values():
            server.configure(queued=0.1, duration=0.5)
        local.emulators["matatika"].configure_target("pl-fails", outcome="failure")
        # a 401 on the first poll makes the adapter re-read its key (the refresh path)
        local.emulators["pixxel"].add_fault(Fault(method="GET", path=r"/jobs/", status=[401]))
        ids = ["sec-ds", "sec-px", "sec-mt", "sec-bad"]
        local.submit(deepset_request("sec-ds"))
        local.submit(pixxel_request("sec-px"))
        local.submit(matatika_request("sec-mt", pipeline_id="pl-fails"))
        local.submit({"request_id": "sec-bad", "provider": "pixxel", "params": {"api_key": "x"}})
        outcomes, still_open = local.wait_for_outcomes(ids, timeout=90)
        assert not still_open
        assert outcomes["sec-px"]["type"] == "jobrelay.job.succeeded"
        events = json.dumps(local.events())
        emulator_requests = json.dumps(
            [r for server in local.emulators.values() for r in server.requests()]
        )
    captured = logs.read_text() + metrics.read_text() + events + emulator_requests
    assert logs.read_text().strip(), "the run wrote no logs"
    for key in KEYS.values():
        assert key not in captured
        assert key.split("-SECRET-")[1] not in captured


def test_provider_clients_always_verify_tls():
    client = http_client(Settings())
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert pool._ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert pool._ssl_context.check_hostname is True

"""Schedules: one entry in schedules.yaml becomes one Scheduler schedule in the template, and a
firing is rendered exactly as Scheduler renders it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jobrelay.creation import parse_request
from jobrelay.errors import RequestInvalid
from jobrelay_cli.schedules import (
    ScheduleError,
    firing,
    load_schedules,
    render_template,
    template_schedules,
)
from jobrelay_cli.template import PROJECT_ROOT


def test_template_holds_the_current_schedules():
    template = (PROJECT_ROOT / "template.yaml").read_text(encoding="utf-8")
    assert render_template(template, load_schedules()) == template, "run `make schedules`"


def test_the_sample_schedules_are_deployed():
    deployed = template_schedules()
    assert set(deployed) == {"nightly-matatika-sync", "hourly-deepset-eval"}
    nightly = deployed["nightly-matatika-sync"]
    assert nightly.expression == "cron(0 2 * * ? *)"
    assert nightly.timezone == "Europe/Berlin"
    assert nightly.state == "ENABLED"


def test_a_firing_carries_a_request_id_from_name_and_scheduled_time():
    schedule = template_schedules()["nightly-matatika-sync"]
    at = datetime(2026, 11, 24, 1, 0, 0, 123456, tzinfo=UTC)
    body = firing(schedule.input, schedule_arn="arn:aws:scheduler:x", at=at)
    request = parse_request(body)
    assert request.request_id == "nightly-matatika-sync@2026-11-24T01:00:00Z"
    assert firing(schedule.input, schedule_arn="arn:aws:scheduler:x", at=at) == body


def _schedules_file(tmp_path: Path, entry: dict[str, Any]) -> Path:
    path = tmp_path / "schedules.yaml"
    path.write_text(json.dumps({"schedules": [entry]}), encoding="utf-8")
    return path


GOOD = {
    "name": "ok",
    "expression": "rate(5 minutes)",
    "request": {"provider": "matatika", "params": {"pipeline_id": "p"}},
}


@pytest.mark.parametrize(
    "change",
    [
        {"name": "Not_Valid"},
        {"expression": "every day"},
        {"request": {"provider": "matatika", "params": {"pipeline_id": "p"}, "request_id": "x"}},
    ],
)
def test_invalid_schedule_entries_are_refused(tmp_path, change):
    with pytest.raises(ScheduleError):
        load_schedules(_schedules_file(tmp_path, {**GOOD, **change}))


def test_a_schedule_with_an_invalid_request_is_refused(tmp_path):
    bad = {**GOOD, "request": {"provider": "matatika", "params": {}}}
    with pytest.raises(RequestInvalid):
        load_schedules(_schedules_file(tmp_path, bad))

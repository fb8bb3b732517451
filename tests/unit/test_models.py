"""The request contract: what producers may send and what is refused, field by field."""

from __future__ import annotations

import json

import pytest
from jobrelay.creation import parse_request, request_key
from jobrelay.errors import RequestInvalid
from jobrelay.models import JobStatus, execution_name
from jobrelay.providers.deepset import DeepsetParams
from jobrelay.registry import REGISTRY

DeepsetJobRequest = REGISTRY["deepset"].request_model
PixxelJobRequest = REGISTRY["pixxel"].request_model
MatatikaJobRequest = REGISTRY["matatika"].request_model

WS = "0b6e2c1e-5f1a-4c1e-9a47-1d2b3c4d5e6f"
PIPE = "7d7b2a3c-1e2f-4a5b-8c9d-0e1f2a3b4c5d"


def deepset(**params):
    base = {
        "workspace_id": WS,
        "name": "nightly eval",
        "pipeline_id": PIPE,
        "execution_mode": "ACROSS_FILES",
        "queries": [{"query": "What changed?"}],
    }
    base.update(params)
    return {"provider": "deepset", "params": base}


def problems_of(body) -> dict[str, str]:
    with pytest.raises(RequestInvalid) as caught:
        parse_request(json.dumps(body) if not isinstance(body, str) else body)
    return {p.field: p.kind for p in caught.value.problems}


def test_parse_request_when_each_provider_is_valid_returns_its_model():
    assert isinstance(parse_request(json.dumps(deepset())), DeepsetJobRequest)
    pixxel = {"provider": "pixxel", "params": {"workflow_id": "wf-1", "project_id": "p-9"}}
    assert isinstance(parse_request(json.dumps(pixxel)), PixxelJobRequest)
    matatika = {"provider": "matatika", "params": {"pipeline_id": "a1b2"}}
    assert isinstance(parse_request(json.dumps(matatika)), MatatikaJobRequest)


def test_deepset_defaults_match_the_provider():
    request = parse_request(json.dumps(deepset()))
    assert isinstance(request, DeepsetJobRequest)
    assert isinstance(request.params, DeepsetParams)
    assert request.params.concurrency == 3
    assert request.params.dry_run is False
    assert request.tracking.deadline_seconds is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (deepset(url="https://evil.example"), "params.url"),
        ({**deepset(), "base_url": "https://evil.example"}, "base_url"),
        (deepset(concurrency=21), "params.concurrency"),
        (deepset(concurrency=0), "params.concurrency"),
        (deepset(execution_mode="SOMETIMES"), "params.execution_mode"),
        (deepset(workspace_id="../../admin"), "params.workspace_id"),
        (deepset(queries=[{"text": "no query field"}]), "params.queries.0.query"),
        (deepset(queries=None), "params"),
        (
            {"provider": "pixxel", "params": {"workflow_id": "../x", "project_id": "p"}},
            "params.workflow_id",
        ),
        (
            {"provider": "pixxel", "params": {"workflow_id": "a/b", "project_id": "p"}},
            "params.workflow_id",
        ),
        ({"provider": "pixxel", "params": {"workflow_id": "w"}}, "params.project_id"),
        ({"provider": "matatika", "params": {"pipeline_id": "p?x=1"}}, "params.pipeline_id"),
        ({"provider": "matatika", "params": {"pipeline_id": ""}}, "params.pipeline_id"),
        (
            {"provider": "matatika", "params": {"pipeline_id": "p", "api_key": "k"}},
            "params.api_key",
        ),
        ({"provider": "nope", "params": {}}, "provider"),
        ({"params": {}}, "provider"),
        ({**deepset(), "tracking": {"deadline_seconds": 4}}, "tracking.deadline_seconds"),
        ({**deepset(), "request_id": "has space"}, "request_id"),
        ({**deepset(), "metadata": {"blob": "x" * 4000}}, "metadata"),
    ],
)
def test_parse_request_when_a_field_is_wrong_names_that_field(body, field):
    assert field in problems_of(body)


def test_parse_request_when_body_is_not_json_or_not_an_object_is_invalid():
    assert problems_of("{not json") == {"body": "json_invalid"}
    assert problems_of("[1, 2]") == {"body": "type_error"}


def test_request_key_uses_a_valid_request_id_else_the_message_id():
    assert request_key("m-1", json.dumps({"request_id": "order-42"})) == "order-42"
    assert request_key("m-1", json.dumps({"request_id": "bad id/../"})) == "m-1"
    assert request_key("m-1", json.dumps({"request_id": 42})) == "m-1"
    assert request_key("m-1", "garbage") == "m-1"


def test_execution_name_is_stable_valid_and_distinct_per_request():
    name = execution_name("nightly@2026-11-23T02:00:00Z")
    assert name == execution_name("nightly@2026-11-23T02:00:00Z")
    assert len(name) <= 80
    assert all(c.isalnum() or c in "-_" for c in name)
    assert execution_name("a:b") != execution_name("a-b")


def test_terminal_statuses():
    assert not JobStatus.QUEUED.terminal
    assert not JobStatus.RUNNING.terminal
    assert all(
        s.terminal
        for s in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT)
    )

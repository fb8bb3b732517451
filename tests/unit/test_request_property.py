"""Properties of the request parser: whatever a producer sends, `parse_request` answers with a
`JobRequest` or a `RequestInvalid` that names a field, and valid requests survive a round trip.
"""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jobrelay.creation import parse_request
from jobrelay.errors import RequestInvalid
from jobrelay.providers.deepset import DeepsetParams
from jobrelay.registry import JobRequest

pytestmark = pytest.mark.bad_inputs

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONTRACT_KEYS = ["request_id", "provider", "params", "tracking", "metadata"]
PARAM_KEYS = [
    "workspace_id",
    "name",
    "pipeline_id",
    "execution_mode",
    "queries",
    "query_set_id",
    "concurrency",
    "description",
    "dry_run",
    "workflow_id",
    "project_id",
]

# Any JSON document json.loads can produce (NaN and Infinity included: it accepts them).
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(["deepset", "pixxel", "matatika", "PER_FILE", "", "..", "a/b"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=12) | st.sampled_from(PARAM_KEYS), children, max_size=4)
    ),
    max_leaves=20,
)


def answer(body: str) -> JobRequest | RequestInvalid:
    """Parse; a `RequestInvalid` is returned, anything else raised fails the property."""
    try:
        return parse_request(body)
    except RequestInvalid as exc:
        return exc


def assert_names_fields(result: JobRequest | RequestInvalid) -> None:
    if isinstance(result, RequestInvalid):
        assert result.problems, result.message
        assert all(problem.field for problem in result.problems), result.problems


@SETTINGS
@given(st.text(max_size=200))
def test_any_text_body_is_a_request_or_invalid_with_named_fields(body: str):
    assert_names_fields(answer(body))


@SETTINGS
@given(json_values)
def test_any_json_value_is_a_request_or_invalid_with_named_fields(value: Any):
    assert_names_fields(answer(json.dumps(value)))


@SETTINGS
@given(
    st.dictionaries(
        st.sampled_from(CONTRACT_KEYS) | st.text(max_size=10),
        json_values,
        max_size=6,
    ),
    st.dictionaries(st.sampled_from(PARAM_KEYS) | st.text(max_size=10), json_values, max_size=6),
    st.sampled_from(["deepset", "pixxel", "matatika"]),
)
def test_objects_with_random_keys_are_requests_or_invalid_with_named_fields(
    body: dict[str, Any], params: dict[str, Any], provider: str
):
    # Given a body that is partly right (a known provider, params with some real keys)
    body = {"provider": provider, "params": params, **body}
    assert_names_fields(answer(json.dumps(body)))


# ------------------------------------------------------------------ valid requests
safe_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:=+@-]{0,40}\Z").filter(
    lambda value: ".." not in value
)
uuids = st.uuids().map(str)
labels = st.text(string.ascii_letters + string.digits + " -_", min_size=1, max_size=40)
metadata = st.dictionaries(
    st.text(min_size=1, max_size=20),
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    max_size=5,
)
tracking = st.fixed_dictionaries(
    {},
    optional={
        "deadline_seconds": st.integers(5, 30 * 24 * 3600),
        "poll_interval_seconds": st.integers(1, 3600),
    },
)
queries = st.lists(
    st.fixed_dictionaries(
        {"query": st.text(min_size=1, max_size=50)},
        optional={
            "filters": st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8)),
            "group_name": labels,
            "query_index": st.integers(0, 10**6),
        },
    ),
    min_size=1,
    max_size=3,
)
deepset_params = st.fixed_dictionaries(
    {
        "workspace_id": uuids,
        "name": labels,
        "pipeline_id": uuids,
        "execution_mode": st.sampled_from(["PER_FILE", "ACROSS_FILES"]),
        "queries": queries,
    },
    optional={
        "concurrency": st.integers(1, 20),
        "description": st.text(max_size=100),
        "dry_run": st.booleans(),
    },
)
valid_requests = st.fixed_dictionaries(
    {
        "provider": st.just("deepset"),
        "params": deepset_params,
    },
    optional={"request_id": safe_ids, "tracking": tracking, "metadata": metadata},
) | st.fixed_dictionaries(
    {
        "provider": st.sampled_from(["pixxel", "matatika"]),
        "params": st.just({}),
    },
    optional={"request_id": safe_ids, "tracking": tracking, "metadata": metadata},
)


def with_provider_ids(draw_ids: dict[str, str], request: dict[str, Any]) -> dict[str, Any]:
    if request["provider"] == "pixxel":
        request["params"] = {"workflow_id": draw_ids["a"], "project_id": draw_ids["b"]}
    elif request["provider"] == "matatika":
        request["params"] = {"pipeline_id": draw_ids["a"]}
    return request


@SETTINGS
@given(valid_requests, st.fixed_dictionaries({"a": safe_ids, "b": safe_ids}))
def test_valid_requests_are_accepted_and_survive_a_round_trip(
    request: dict[str, Any], ids: dict[str, str]
):
    # Given a request that follows the contract
    request = with_provider_ids(ids, request)
    # When it is parsed, dumped as JSON and parsed again
    parsed = parse_request(json.dumps(request))
    again = parse_request(json.dumps(parsed.model_dump(mode="json")))
    # Then nothing was lost or changed on the way
    assert again == parsed
    dumped = parsed.model_dump(mode="json")
    assert dumped["provider"] == request["provider"]
    assert dumped["request_id"] == request.get("request_id")
    assert dumped["metadata"] == request.get("metadata", {})
    for name, value in request.get("tracking", {}).items():
        assert dumped["tracking"][name] == value
    for name, value in request["params"].items():
        if name == "queries":
            assert [q["query"] for q in dumped["params"]["queries"]] == [q["query"] for q in value]
        else:
            assert dumped["params"][name] == value, name
    if isinstance(parsed.params, DeepsetParams):
        assert parsed.params.concurrency == request["params"].get("concurrency", 3)

"""The CreateJob bench's pure parts: where each party runs, calls and CPU per record, the
profile's breakdown and the report's targets."""

from __future__ import annotations

from typing import Any

from bench.common import cpu_split
from bench.createjob import (
    Invocation,
    calls_per_record,
    cpu_in_calls,
    function_environment,
    package_of,
    profile_breakdown,
    timeline,
)
from bench.report import createjob_rows, targets


def test_the_function_gets_one_cpu_and_everyone_else_the_rest() -> None:
    assert cpu_split({0, 1}) == ({0}, {1})
    assert cpu_split({3, 1, 2}) == ({1}, {2, 3})


def test_one_cpu_cannot_be_split() -> None:
    assert cpu_split({0}) is None
    assert cpu_split(set()) is None


def test_calls_per_record_by_operation_most_frequent_first() -> None:
    counts = [
        {"dynamodb.PutItem": 2, "dynamodb.UpdateItem": 3, "stepfunctions.StartExecution": 1},
        {"dynamodb.PutItem": 2, "dynamodb.UpdateItem": 3, "stepfunctions.StartExecution": 1},
    ]
    per = calls_per_record(counts, records=2)
    assert list(per) == [
        "dynamodb.UpdateItem",
        "dynamodb.PutItem",
        "stepfunctions.StartExecution",
        "total",
    ]
    assert per["dynamodb.UpdateItem"] == 3.0
    assert per["total"] == 6.0


def test_cpu_in_calls_splits_aws_provider_phases_and_the_rest() -> None:
    one = Invocation(
        seconds=0.3,
        cpu_seconds=0.02,
        calls={"dynamodb.PutItem": 2, "provider.POST": 1, "phase.sign (SigV4)": 2},
        cpu_in_calls={
            "dynamodb.PutItem": 0.006,
            "provider.POST": 0.002,
            "phase.sign (SigV4)": 0.001,
        },
    )
    assert one.aws_calls == {"dynamodb.PutItem": 2}
    figures = cpu_in_calls([one], records=1, cpu_per_record=0.02)
    assert figures["aws_ms_per_record"] == 6.0
    assert figures["aws_ms_per_call"] == 3.0
    assert figures["provider_ms_per_record"] == 2.0
    assert figures["rest_ms_per_record"] == 12.0
    assert "phase.sign (SigV4)" not in figures["by_call"]
    assert figures["aws_phases"]["sign (SigV4)"]["ms_per_aws_call"] == 0.5
    assert (
        figures["aws_phases"]["the rest (events, retries, botocore's own)"]["ms_per_record"] == 5.0
    )


def test_the_warm_function_reads_secrets_as_rarely_as_on_aws() -> None:
    environ = {"SECRET_MAX_AGE_SECONDS": "2", "IDEMPOTENCY_TABLE": "t"}
    assert function_environment(environ) == {"IDEMPOTENCY_TABLE": "t"}


def test_packages_by_path() -> None:
    assert package_of("/v/site-packages/botocore/client.py") == "botocore"
    assert package_of("/w/layers/common/python/jobrelay/creation.py") == "jobrelay"
    assert package_of("/v/site-packages/pydantic_core/core.py") == "pydantic"
    assert package_of("/py/lib/python3.11/email/feedparser.py") == "http.client (stdlib)"
    assert package_of("<string>") == "other"


def test_profile_breakdown_shares_add_up_and_c_functions_go_to_their_callers() -> None:
    client = "/v/site-packages/botocore/client.py"
    creation = "/w/jobrelay/creation.py"
    rows: list[list[Any]] = [
        [creation, 10, "handle", 2, 0.002, 0.010],
        [client, 998, "_make_api_call", 4, 0.004, 0.008],
        ["~", 0, "<built-in method _hashlib.new>", 4, 0.004, 0.004, [[client, 0.004]]],
    ]
    breakdown = profile_breakdown(rows, records=2, cpu_per_record=0.005)
    by_package = {p["package"]: p for p in breakdown["by_package"]}
    assert by_package["botocore"]["share"] == 0.8
    assert by_package["jobrelay"]["share"] == 0.2
    # ms are shares of the unprofiled CPU per record, not the profiled.
    assert by_package["botocore"]["ms_per_record"] == 4.0
    assert breakdown["profiled_cpu_ms_per_record"] == 5.0
    aws = next(a for a in breakdown["activities"] if a["activity"].startswith("AWS calls"))
    assert aws["calls_per_record"] == 2.0
    assert aws["share"] == 0.8
    assert breakdown["top_cumulative"][0]["function"] == "jobrelay/creation.py:10(handle)"


def _batch(records: int, calls: float | None) -> dict[str, Any]:
    batch: dict[str, Any] = {
        "records": records,
        "batch_seconds": 0.3,
        "slowest_single_seconds": 0.25,
        "sequential_seconds": 2.5,
        "batch_to_slowest_single": 1.2,
        "batch_to_sequential": 0.12,
        "cpu_seconds_per_record": {"function": 0.008, "aws": 0.02, "providers": 0.001},
        "cpu_floor_seconds": 0.2,
        "function_cpu_floor_seconds": 0.08,
        "others_cpu_floor_seconds": 0.2,
        "creates_in_flight_peak": records,
        "single_cpu_seconds_median": 0.012,
        "provider_calls_per_record": 1.0,
    }
    if calls is not None:
        batch["aws_calls_per_record"] = {"dynamodb.PutItem": 2.0, "total": calls}
    return batch


def test_targets_of_cpu_batch_and_calls_each_with_met() -> None:
    results: dict[str, Any] = {
        "createjob": {
            "cores": 2,
            "placement": {
                "pinned": True,
                "function_cpus": [0],
                "others_cpus": [1],
                "note": "function on CPU 0",
            },
            "batches": [_batch(10, 4.0), _batch(100, 4.0)],
        }
    }
    found = {t["name"]: t for t in targets(results)}
    cpu = found["CreateJob: the function's own CPU per record"]
    assert (cpu["ratio"], cpu["target"], cpu["unit"], cpu["met"]) == (8.0, 10.0, "ms", True)
    assert found["CreateJob batch of 10 at 200 ms latency vs its slowest single call"]["met"]
    calls = found["CreateJob: AWS calls per record on the happy path"]
    assert (calls["ratio"], calls["target"], calls["unit"], calls["met"]) == (
        4.0,
        3.0,
        "calls",
        False,
    )
    results["targets"] = list(found.values())
    rows = createjob_rows(results)
    assert any("MISSED" in row[4] for row in rows if "AWS calls per record" in row[0])


def test_a_run_before_issue_13_has_no_calls_target_and_no_rows_of_its_figures() -> None:
    results: dict[str, Any] = {"createjob": {"cores": 2, "batches": [_batch(10, None)]}}
    results["targets"] = targets(results)
    assert [t["name"] for t in results["targets"]] == [
        "CreateJob: the function's own CPU per record",
        "CreateJob batch of 10 at 200 ms latency vs its slowest single call",
    ]
    assert len(createjob_rows(results)) == 2


def test_timeline_of_a_batch_around_its_provider_calls() -> None:
    creates = [
        {"received_mono": 10.05, "answered_mono": 10.25},
        {"received_mono": 10.10, "answered_mono": 10.32},
    ]
    line = timeline(creates, started=10.0, ended=10.5)
    assert line is not None
    assert round(line["to_first_provider_call"], 3) == 0.05
    assert round(line["provider_calls_leaving"], 3) == 0.05
    assert round(line["slowest_provider_answer"], 3) == 0.22
    assert round(line["after_last_answer"], 3) == 0.18
    assert timeline([], started=0.0, ended=1.0) is None


def test_the_dependency_floor_goes_beside_the_cpu_and_batch_targets_without_deciding_them() -> None:
    batch = _batch(10, 3.0)
    batch["dependency_floor"] = {
        "cpu_seconds_per_record": 0.011,
        "batch_to_slowest_single": 1.5,
        "batch_seconds": 0.45,
        "median_single_seconds": 0.25,
        "aws_stand_in_cpu_seconds_per_record": 0.025,
        "cpu_in_calls": {
            "aws_ms_per_record": 8.6,
            "provider_ms_per_record": 1.4,
            "rest_ms_per_record": 1.0,
        },
    }
    batch["cpu_in_calls"] = {
        "aws_ms_per_record": 6.0,
        "aws_ms_per_call": 2.0,
        "provider_ms_per_record": 1.0,
        "rest_ms_per_record": 1.0,
    }
    results: dict[str, Any] = {"createjob": {"cores": 2, "batches": [batch]}}
    found = {t["name"]: t for t in targets(results)}
    cpu = found["CreateJob: the function's own CPU per record"]
    # The function's figure decides `met`; the floor says whether the target is reachable.
    assert (cpu["floor_ms"], cpu["to_floor"], cpu["floor_within_target"]) == (11.0, 0.727, False)
    assert cpu["met"] is True
    batch10 = found["CreateJob batch of 10 at 200 ms latency vs its slowest single call"]
    assert (batch10["floor_ratio"], batch10["floor_within_target"]) == (1.5, False)
    assert batch10["floor_to_median_single"] == 1.8
    results["targets"] = list(found.values())
    rows = createjob_rows(results)
    floor_row = next(row for row in rows if "dependency floor" in row[0])
    assert "11.0 ms CPU per record" in floor_row[1]
    assert "0.73x the floor's CPU" in floor_row[3]

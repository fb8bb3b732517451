"""Ambiguous creates: each adapter's `find_created` against its provider's job listing, and
`JobCreator` adopting what it finds instead of creating a second job."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from jobrelay.creation import JobCreator, QueueMessage
from jobrelay.errors import (
    ConfigurationError,
    JobClaimed,
    ProviderProtocolError,
    ProviderRejected,
    ProviderUnavailable,
    RequestInProgress,
    RequestWaiting,
    TrackerThrottled,
)
from jobrelay.providers import Provider
from jobrelay.providers.deepset import DeepsetParams
from jobrelay.providers.matatika import MatatikaParams
from jobrelay.providers.pixxel import PixxelParams
from jobrelay.settings import Settings

from tests.fakes import MemoryDeadLetters, MemoryLedger, MemoryPublisher, MemoryStarter

WS = "0b6e2c1e-5f1a-4c1e-9a47-1d2b3c4d5e6f"
PIPE = "7d7b2a3c-1e2f-4a5b-8c9d-0e1f2a3b4c5d"
OTHER_PIPE = "11111111-2222-4333-8444-555555555555"
NOW = datetime.now(UTC).replace(microsecond=0)
SINCE = NOW - timedelta(minutes=3)

DEEPSET_PARAMS = DeepsetParams.model_validate(
    {
        "workspace_id": WS,
        "name": "nightly-eval",
        "pipeline_id": PIPE,
        "execution_mode": "PER_FILE",
        "queries": [{"query": "q1"}],
    }
)
PIXXEL_PARAMS = PixxelParams(workflow_id="wf-1", project_id="proj-1")
MATATIKA_PARAMS = MatatikaParams(pipeline_id="pipe-1")


def stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_response(status: int, payload: Any) -> httpx.Response:
    return httpx.Response(status, json=payload)


# ------------------------------------------------------------------ deepset
def deepset_job(job_id: str, created: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "name": "nightly-eval",
        "pipeline_id": PIPE,
        "execution_mode": "PER_FILE",
        "status": "STARTED",
        "created_at": stamp(created),
        "executed_requests": 0,
        "total_requests": 1,
        **fields,
    }


def deepset_pages(*pages: list[dict[str, Any]]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params["page_number"])
        items = pages[number - 1] if number <= len(pages) else []
        return json_response(200, {"data": items, "has_more": number < len(pages)})

    return handler


def test_deepset_adopts_the_job_with_the_same_pipeline_and_name_made_in_the_window(
    make_provider,
):
    # Given the workspace lists our job among jobs of other pipelines and names
    listing = [
        deepset_job("other-pipe", NOW, pipeline_id=OTHER_PIPE),
        deepset_job("other-name", NOW, name="adhoc"),
        deepset_job("other-mode", NOW, execution_mode="ACROSS_FILES"),
        deepset_job("ours", NOW - timedelta(seconds=30)),
        deepset_job("old-run", SINCE - timedelta(minutes=10)),
    ]
    provider, recorder = make_provider("deepset", deepset_pages(listing))
    # When reconciliation looks for the job
    found = provider.find_created(DEEPSET_PARAMS, SINCE)
    # Then it adopts ours, with the locator polling needs and its first status
    assert found is not None
    assert found.remote_job_id == "ours"
    assert found.locator == {"workspace_id": WS}
    assert found.report is not None
    assert found.report.raw_status == "STARTED"
    request = recorder.requests[0]
    assert request.method == "GET"
    assert request.url.path == f"/api/v2/workspaces/{WS}/jobs"
    assert request.headers["Authorization"] == "Bearer secret-key"


def test_deepset_reads_further_pages_until_it_passes_the_window(make_provider):
    page_one = [deepset_job(f"new-{n}", NOW, name=f"x-{n}") for n in range(50)]
    page_two = [deepset_job("ours", SINCE + timedelta(seconds=5))]
    page_three = [deepset_job("older", SINCE - timedelta(hours=1))]
    page_four = [deepset_job("never-read", SINCE + timedelta(seconds=1))]
    provider, recorder = make_provider(
        "deepset", deepset_pages(page_one, page_two + page_three, page_four)
    )
    found = provider.find_created(DEEPSET_PARAMS, SINCE)
    assert found is not None
    assert found.remote_job_id == "ours"
    assert [r.url.params["page_number"] for r in recorder.requests] == ["1", "2"]
    assert recorder.requests[0].url.params["limit"] == "50"


def test_deepset_prefers_the_earliest_of_several_matches(make_provider):
    listing = [
        deepset_job("later", NOW),
        deepset_job("earliest", SINCE + timedelta(seconds=1)),
    ]
    provider, _ = make_provider("deepset", deepset_pages(listing))
    found = provider.find_created(DEEPSET_PARAMS, SINCE)
    assert found is not None
    assert found.remote_job_id == "earliest"


@pytest.mark.parametrize(
    "listing",
    [
        [],
        [deepset_job("too-old", SINCE - timedelta(seconds=1))],
        [deepset_job("no-time", NOW, created_at=None)],
        [deepset_job("bad-time", NOW, created_at="yesterday")],
        [deepset_job("bad-pipeline", NOW, pipeline_id="not-a-uuid")],
    ],
)
def test_deepset_finds_nothing_it_cannot_prove_is_ours(make_provider, listing):
    provider, _ = make_provider("deepset", deepset_pages(listing))
    assert provider.find_created(DEEPSET_PARAMS, SINCE) is None


def test_deepset_accepts_a_bare_list_and_naive_times_as_utc(make_provider):
    naive = NOW.replace(tzinfo=None).isoformat()
    provider, _ = make_provider(
        "deepset", lambda request: json_response(200, [deepset_job("ours", NOW, created_at=naive)])
    )
    found = provider.find_created(DEEPSET_PARAMS, SINCE)
    assert found is not None
    assert found.remote_job_id == "ours"


# ------------------------------------------------------------------ pixxel
def pixxel_job(job_id: str, created: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "id": job_id,
        "workflow_id": "wf-1",
        "status": "running",
        "progress": "0%",
        "created_at": stamp(created),
        "created_by": "user-1",
        "val_errors": [],
        "tasks": [],
        **fields,
    }


def test_pixxel_adopts_the_workflow_job_made_in_the_window_filtering_by_day(make_provider):
    listing = [
        pixxel_job("later", NOW),
        pixxel_job("ours", SINCE + timedelta(seconds=2)),
        pixxel_job("before", SINCE - timedelta(seconds=2)),
        pixxel_job("elsewhere", NOW, workflow_id="wf-2"),
    ]
    provider, recorder = make_provider("pixxel", lambda r: json_response(200, {"jobs": listing}))
    found = provider.find_created(PIXXEL_PARAMS, SINCE)
    assert found is not None
    assert found.remote_job_id == "ours"
    assert found.locator == {"workflow_id": "wf-1"}
    # one listing per UTC day of the window, each filtered on that day
    days = {SINCE.date().isoformat(), datetime.now(UTC).date().isoformat()}
    assert {r.url.params["created_on"] for r in recorder.requests} == days
    assert all(r.url.path == "/v0/workflows/wf-1/jobs" for r in recorder.requests)
    assert recorder.requests[0].headers["Authorization"] == "secret-key"


def test_pixxel_window_over_several_days_is_listed_unfiltered(make_provider):
    provider, recorder = make_provider("pixxel", lambda r: json_response(200, {"jobs": []}))
    assert provider.find_created(PIXXEL_PARAMS, NOW - timedelta(days=5)) is None
    assert len(recorder.requests) == 1
    assert "created_on" not in recorder.requests[0].url.params


def test_pixxel_found_job_with_val_errors_is_refused_like_the_create(make_provider):
    # A list item carries no val_errors (docs/providers.md, "Pixxel"): the job's GET does
    invalid = pixxel_job(
        "invalid",
        NOW,
        status="failed",
        val_errors=[{"from": "a", "to": "b", "err": "x", "reason": "ports differ"}],
    )
    listed = {k: v for k, v in invalid.items() if k not in ("val_errors", "tasks")}

    def pixxel_api(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/jobs"):
            return json_response(200, {"jobs": [listed]})
        return json_response(200, invalid)

    provider, _ = make_provider("pixxel", pixxel_api)
    with pytest.raises(ProviderRejected) as refused:
        provider.find_created(PIXXEL_PARAMS, SINCE)
    assert refused.value.problems[0].message == "ports differ"


# ------------------------------------------------------------------ matatika
def matatika_job(job_id: str, created: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "id": job_id,
        "created": stamp(created),
        "type": "PIPELINE_RUN",
        "status": "RUNNING",
        "_links": {"self": {"href": f"https://app.matatika.com/api/jobs/{job_id}"}},
        **fields,
    }


def hal_pages(*pages: list[dict[str, Any]]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        # The pipeline's own view (no `page`) answers a page without a latest job.
        number = int(request.url.params.get("page", 0))
        items = pages[number] if number < len(pages) else []
        body: dict[str, Any] = {
            "_links": {},
            "page": {"size": 50, "totalElements": 0, "totalPages": len(pages), "number": number},
        }
        if items:
            body["_embedded"] = {"jobs": items}
        return json_response(200, body)

    return handler


def test_matatika_adopts_the_pipeline_run_made_in_the_window(make_provider):
    listing = [
        matatika_job("task", NOW, type="TASK"),
        matatika_job("ours", NOW - timedelta(seconds=10), status="COMPLETE"),
        matatika_job("yesterday", NOW - timedelta(days=1)),
    ]
    provider, recorder = make_provider("matatika", hal_pages(listing))
    found = provider.find_created(MATATIKA_PARAMS, SINCE)
    assert found is not None
    assert found.remote_job_id == "ours"
    assert found.locator == {"pipeline_id": "pipe-1"}
    assert found.report is not None
    assert found.report.raw_status == "COMPLETE"
    request = recorder.requests[0]
    assert request.url.path == "/api/pipelines/pipe-1/jobs"
    assert request.url.params["sort"] == "created,desc"
    assert request.url.params["page"] == "0"


def test_matatika_empty_collection_without_embedded_finds_nothing(make_provider):
    provider, recorder = make_provider("matatika", hal_pages())
    assert provider.find_created(MATATIKA_PARAMS, SINCE) is None
    # the listing, then the pipeline's latest job (a queued job may be missing from lists)
    assert len(recorder.requests) == 2


def test_matatika_reads_the_next_page_while_jobs_are_in_the_window(make_provider):
    page_one = [matatika_job(f"n{n}", NOW, type="TASK") for n in range(50)]
    page_two = [matatika_job("ours", SINCE + timedelta(seconds=1))]
    provider, recorder = make_provider("matatika", hal_pages(page_one, page_two))
    found = provider.find_created(MATATIKA_PARAMS, SINCE)
    assert found is not None
    assert found.remote_job_id == "ours"
    assert [r.url.params["page"] for r in recorder.requests] == ["0", "1"]


# ------------------------------------------------------------------ failures of the listing
PARAMS: dict[str, Any] = {
    "deepset": DEEPSET_PARAMS,
    "pixxel": PIXXEL_PARAMS,
    "matatika": MATATIKA_PARAMS,
}


@pytest.mark.parametrize("name", ["deepset", "pixxel", "matatika"])
@pytest.mark.parametrize("status", [403, 404])
def test_gone_target_finds_nothing_so_the_create_answers_for_good(make_provider, name, status):
    provider, _ = make_provider(name, lambda r: json_response(status, {"message": "no"}))
    assert provider.find_created(PARAMS[name], SINCE) is None


@pytest.mark.parametrize("name", ["deepset", "pixxel", "matatika"])
@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (lambda r: json_response(503, {}), ProviderUnavailable),
        (lambda r: httpx.Response(200, content=b'{"data": ['), ProviderProtocolError),
        (lambda r: json_response(200, {"unexpected": True}), ProviderProtocolError),
        (lambda r: json_response(400, {"message": "bad paging"}), ProviderProtocolError),
        (lambda r: json_response(401, {}), ConfigurationError),
    ],
)
def test_unreadable_listing_is_raised_never_taken_for_no_job(make_provider, name, answer, error):
    # A listing we cannot read must not let the create run again: the record is retried.
    provider, _ = make_provider(name, answer)
    with pytest.raises(error):
        provider.find_created(PARAMS[name], SINCE)


# ------------------------------------------------------------------ through JobCreator
def creator_for(
    provider: Provider, *, starter: MemoryStarter | None = None, requeue: Any = None
) -> tuple[JobCreator, MemoryStarter]:
    """A JobCreator on in-memory ports and this provider (`starter` and `requeue` where a
    test needs its own)."""
    starter = starter or MemoryStarter()
    creator = JobCreator(
        settings=Settings(),
        provider_for=lambda name: provider,
        publisher=MemoryPublisher(),
        starter=starter,
        dead_letters=MemoryDeadLetters(),
        ledger=MemoryLedger(),
        trackers=starter,
        requeue=requeue,
    )
    return creator, starter


def test_matatika_create_that_answered_502_after_creating_is_adopted_on_the_retry(
    make_provider,
):
    # Given a provider that creates the job but answers 502 the first time
    jobs: list[dict[str, Any]] = []

    def provider_api(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            jobs.insert(0, matatika_job(f"job-{len(jobs) + 1}", datetime.now(UTC)))
            return json_response(502 if len(jobs) == 1 else 201, jobs[0])
        return hal_pages(jobs)(request)

    provider, recorder = make_provider("matatika", provider_api)
    creator, starter = creator_for(provider)
    message = QueueMessage.from_record(
        "m-1",
        json.dumps(
            {"request_id": "r-1", "provider": "matatika", "params": {"pipeline_id": "pipe-1"}}
        ),
    )
    # When CreateJob handles the message: the create is ambiguous and raised for a retry
    with pytest.raises(ProviderUnavailable) as first:
        creator.handle(message)
    assert first.value.ambiguous
    # and SQS delivers it again
    result = creator.handle(message)
    # Then the job the first attempt made is adopted and tracked; no second create is sent
    assert result.outcome == "created"
    assert result.adopted
    assert result.remote_job_id == "job-1"
    assert [r.method for r in recorder.requests].count("POST") == 1
    assert [s.job.remote_job_id for s in starter.started] == ["job-1"]


def test_ambiguous_create_that_made_nothing_is_created_on_the_retry(make_provider):
    # Given a create that times out before the provider acted
    posts: list[int] = []
    jobs: list[dict[str, Any]] = []

    def provider_api(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posts.append(1)
            if len(posts) == 1:
                raise httpx.ReadTimeout("timed out", request=request)
            jobs.insert(0, pixxel_job("job-1", datetime.now(UTC)))
            return json_response(200, jobs[0])
        return json_response(200, {"jobs": jobs})

    provider, _ = make_provider("pixxel", provider_api)
    creator, starter = creator_for(provider)
    body = {
        "request_id": "r-2",
        "provider": "pixxel",
        "params": {"workflow_id": "wf-1", "project_id": "p"},
    }
    message = QueueMessage.from_record("m-2", json.dumps(body))
    with pytest.raises(ProviderUnavailable):
        creator.handle(message)
    # When it is delivered again, the search finds nothing and the job is created once
    result = creator.handle(message)
    assert result.outcome == "created"
    assert not result.adopted
    assert len(posts) == 2
    assert [s.job.remote_job_id for s in starter.started] == ["job-1"]


def test_a_job_another_request_created_on_the_same_pipeline_is_not_adopted(make_provider):
    # Given request A whose first create timed out before Matatika acted
    jobs: list[dict[str, Any]] = []
    posts: list[str] = []

    def provider_api(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posts.append("post")
            if len(posts) == 1:
                raise httpx.ReadTimeout("timed out", request=request)
            jobs.insert(0, matatika_job(f"job-{len(jobs) + 1}", datetime.now(UTC)))
            return json_response(201, jobs[0])
        return hal_pages(jobs)(request)

    provider, _ = make_provider("matatika", provider_api)
    creator, starter = creator_for(provider)

    def message(request_id: str) -> QueueMessage:
        body = {"request_id": request_id, "provider": "matatika", "params": {"pipeline_id": "p"}}
        return QueueMessage.from_record(f"m-{request_id}", json.dumps(body))

    with pytest.raises(ProviderUnavailable):
        creator.handle(message("a"))
    # and request B, on the same pipeline, created job-1 meanwhile
    assert creator.handle(message("b")).remote_job_id == "job-1"
    # When A is delivered again, its reconciliation finds job-1 in the window
    again = creator.handle(message("a"))
    # Then job-1 stays B's, and A gets a job of its own
    assert (again.remote_job_id, again.adopted) == ("job-2", False)
    assert [s.job.remote_job_id for s in starter.started] == ["job-1", "job-2"]


def test_a_fresh_job_claimed_by_another_request_in_between_is_retried(make_provider):
    # Given another request's reconciliation claimed the job in the moment after its create
    jobs: list[dict[str, Any]] = []

    def provider_api(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            jobs.insert(0, matatika_job(f"job-{len(jobs) + 1}", datetime.now(UTC)))
            return json_response(201, jobs[0])
        return hal_pages(jobs)(request)

    provider, _ = make_provider("matatika", provider_api)
    creator, starter = creator_for(provider)
    ledger = creator.ledger
    assert isinstance(ledger, MemoryLedger)
    ledger.claims[("matatika", "job-1")] = "someone-else"
    body = {"request_id": "c", "provider": "matatika", "params": {"pipeline_id": "p"}}
    message = QueueMessage.from_record("m-c", json.dumps(body))
    # When CreateJob handles the request, the record fails (SQS retries it)
    with pytest.raises(JobClaimed):
        creator.handle(message)
    assert starter.started == []
    # Then the retry passes over the claimed job and creates one of its own
    again = creator.handle(message)
    assert (again.remote_job_id, again.adopted) == ("job-2", False)


def test_a_listing_longer_than_reconciliation_reads_stops_at_its_page_limit(make_provider):
    # Given a pipeline with more runs inside the window than reconciliation reads
    from jobrelay.providers.matatika import LIST_MAX_PAGES, LIST_PAGE_SIZE

    pages = [
        [
            matatika_job(f"job-{page}-{i}", NOW - timedelta(seconds=page * LIST_PAGE_SIZE + i))
            for i in range(LIST_PAGE_SIZE)
        ]
        for page in range(LIST_MAX_PAGES + 1)
    ]
    provider, recorder = make_provider("matatika", hal_pages(*pages))
    # When it looks for an ambiguous create's job
    found = provider.find_created(MATATIKA_PARAMS, NOW - timedelta(hours=1))
    # Then it reads its page limit and no more, and takes the earliest run it saw
    assert len(recorder.requests) == LIST_MAX_PAGES
    assert found is not None
    assert found.remote_job_id == f"job-{LIST_MAX_PAGES - 1}-{LIST_PAGE_SIZE - 1}"


def test_a_window_full_of_other_requests_jobs_is_retried_not_guessed(make_provider):
    # Given an ambiguous create, and more matching jobs in its window than reconciliation
    # passes over, every one of them another request's
    from jobrelay.creation import MAX_ADOPTION_TRIES

    jobs = [matatika_job(f"job-{i}", datetime.now(UTC)) for i in range(MAX_ADOPTION_TRIES + 1)]
    posts: list[str] = []

    def provider_api(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posts.append("post")
            raise httpx.ReadTimeout("timed out", request=request)
        return hal_pages(jobs)(request)

    provider, _ = make_provider("matatika", provider_api)
    creator, starter = creator_for(provider)
    ledger = creator.ledger
    assert isinstance(ledger, MemoryLedger)
    for job in jobs:
        ledger.claims[("matatika", job["id"])] = "someone-else"
    body = {"request_id": "d", "provider": "matatika", "params": {"pipeline_id": "p"}}
    message = QueueMessage.from_record("m-d", json.dumps(body))
    with pytest.raises(ProviderUnavailable):
        creator.handle(message)
    # When it is delivered again, the record is handed back to SQS: nothing adopted or made
    with pytest.raises(JobClaimed):
        creator.handle(message)
    assert (len(posts), starter.started) == (1, [])


class ThrottledOnce(MemoryStarter):
    """Step Functions refusing the first StartExecution through every SDK retry."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    def start(self, state: Any) -> tuple[str, bool]:
        if not self.refused:
            self.refused += 1
            raise TrackerThrottled("StartExecution refused for now: ThrottlingException")
        return super().start(state)


class SentBack:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    def send(self, body: str, *, delay_seconds: int = 0) -> str:
        self.sent.append((body, delay_seconds))
        return str(len(self.sent))


def test_a_throttled_tracker_start_sends_the_request_back_and_its_job_is_adopted(
    make_provider,
):
    # Given Step Functions refusing the tracker once, after the job was created
    provider, recorder = make_provider(
        "pixxel", lambda request: json_response(200, pixxel_job("job-1", datetime.now(UTC)))
    )
    queue = SentBack()
    creator, starter = creator_for(provider, starter=ThrottledOnce(), requeue=queue)
    body = {
        "request_id": "r-t",
        "provider": "pixxel",
        "params": {"workflow_id": "wf-1", "project_id": "proj-1"},
    }
    message = QueueMessage.from_record("m-1", json.dumps(body))
    # When CreateJob handles it: the request waits (its record is done with, not failed)
    with pytest.raises(RequestWaiting) as waiting:
        creator.handle(message)
    assert waiting.value.waiting_for == "tracker"
    # Then its message is back on the queue with a delay, and its lease is free
    assert [(json.loads(b)["request_id"], d) for b, d in queue.sent] == [("r-t", 900)]
    # and the message's return adopts the recorded job and starts its tracker: one create
    result = creator.handle(QueueMessage.from_record("m-2", queue.sent[0][0]))
    assert (result.outcome, result.adopted, result.remote_job_id) == ("created", True, "job-1")
    assert [r.method for r in recorder.requests].count("POST") == 1
    assert [s.job.remote_job_id for s in starter.started] == ["job-1"]


def test_a_concurrent_duplicate_is_retried_and_never_creates(make_provider):
    # Given a delivery that holds its request (its create is under way)
    def provider_api(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return json_response(200, pixxel_job("job-1", datetime.now(UTC)))
        return json_response(200, {"jobs": []})

    provider, recorder = make_provider("pixxel", provider_api)
    creator, _ = creator_for(provider)
    body = {
        "request_id": "r-d",
        "provider": "pixxel",
        "params": {"workflow_id": "wf-1", "project_id": "proj-1"},
    }
    ledger = creator.ledger
    ledger.begin("r-d", NOW, lease_seconds=60, attempt=True)
    # When a duplicate of its message arrives meanwhile, it is refused for a retry
    with pytest.raises(RequestInProgress):
        creator.handle(QueueMessage.from_record("m-2", json.dumps(body)))
    assert recorder.requests == []
    # and once the first gives the request up (here: it crashed before its create, so the
    # duplicate looks for its job first), the duplicate goes on: one create in all
    ledger.release("r-d")
    assert creator.handle(QueueMessage.from_record("m-2", json.dumps(body))).outcome == "created"
    assert [r.method for r in recorder.requests].count("POST") == 1


def test_deliveries_after_the_outcome_do_nothing_and_hold_nothing(make_provider):
    # Given a request that has its outcome
    provider, recorder = make_provider(
        "pixxel", lambda request: json_response(200, pixxel_job("job-1", datetime.now(UTC)))
    )
    creator, starter = creator_for(provider)
    body = {
        "request_id": "r-o",
        "provider": "pixxel",
        "params": {"workflow_id": "wf-1", "project_id": "p"},
    }
    creator.handle(QueueMessage.from_record("m-1", json.dumps(body)))
    creator.ledger.record_outcome("r-o", event_type="jobrelay.job.succeeded", event_id="e-1")
    # When its message comes twice more, one after the other
    results = [
        creator.handle(QueueMessage.from_record(m, json.dumps(body))) for m in ("m-2", "m-3")
    ]
    # Then both find the outcome (neither is refused a lease), and nothing is made again
    assert [r.event_id for r in results] == ["e-1", "e-1"]
    assert [r.method for r in recorder.requests].count("POST") == 1
    assert len(starter.started) == 1

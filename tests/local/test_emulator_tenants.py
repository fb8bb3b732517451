"""The emulators as multi-tenant APIs, over loopback HTTP: several keys accepted, each job its
creator's (another tenant's calls get 404), an unknown key refused as the provider refuses
it, and per tenant the most jobs running at once, read through the admin API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from jobrelay_local.emulators import (
    DEFAULT_API_KEY,
    DEFAULT_TENANT,
    EmulatorServer,
    key_fingerprint,
)
from jobrelay_local.emulators.deepset import DeepsetEmulator
from jobrelay_local.emulators.matatika import MatatikaEmulator
from jobrelay_local.emulators.pixxel import PixxelEmulator

from tests.local.conftest import DEEPSET_JOBS, deepset_body, pixxel_jobs, wait_until

pytestmark = pytest.mark.integration


@dataclass
class Api:
    """One provider's create and get, as a client holding one key calls them."""

    emulator: EmulatorServer
    refusal: int  # how the provider answers an unknown key

    def headers(self, key: str) -> dict[str, str]:
        # Pixxel's docs send the raw key; the others a bearer token.
        scheme = "" if self.emulator.provider == "pixxel" else "Bearer "
        return {"Authorization": f"{scheme}{key}"}

    def create(self, key: str, target: str | None = None) -> httpx.Response:
        url, headers = self.emulator.url, self.headers(key)
        if self.emulator.provider == "deepset":
            return httpx.post(url + DEEPSET_JOBS, json=deepset_body(), headers=headers)
        if self.emulator.provider == "pixxel":
            return httpx.post(
                url + pixxel_jobs(), params={"project_id": "p"}, headers=headers, timeout=5
            )
        pipeline = target or f"pl-{uuid.uuid4().hex[:8]}"
        return httpx.post(f"{url}/api/pipelines/{pipeline}/jobs", headers=headers)

    def created_id(self, key: str) -> str:
        answer = self.create(key)
        assert answer.status_code in (200, 201), answer.text
        body = answer.json()
        return str(body.get("job_id") or body["id"])

    def get(self, key: str, job_id: str) -> httpx.Response:
        url, headers = self.emulator.url, self.headers(key)
        if self.emulator.provider == "deepset":
            return httpx.get(f"{url}{DEEPSET_JOBS}/{job_id}", headers=headers)
        if self.emulator.provider == "pixxel":
            params = {"project_id": "p"}
            return httpx.get(f"{url}{pixxel_jobs()}/{job_id}", params=params, headers=headers)
        return httpx.get(f"{url}/api/jobs/{job_id}", headers=headers)


FAST = {"queued": 0.0, "duration": 0.4}


@pytest.fixture(params=["deepset", "pixxel", "matatika"])
def api(request: pytest.FixtureRequest) -> Iterator[Api]:
    emulators = {"deepset": DeepsetEmulator, "pixxel": PixxelEmulator, "matatika": MatatikaEmulator}
    with emulators[request.param]() as emulator:
        emulator.configure(**FAST)
        yield Api(emulator, 403 if request.param == "pixxel" else 401)


def test_two_keys_create_jobs_each_sees_only_its_own(api: Api) -> None:
    # Given two tenants besides the default one
    team_a = api.emulator.add_tenant("key-of-team-a", label="team-a")
    team_b = api.emulator.add_tenant("key-of-team-b")

    # When each creates a job
    job_a = api.created_id("key-of-team-a")
    job_b = api.created_id("key-of-team-b")

    # Then each reads its own job and not the other's
    assert (team_a, team_b) == ("team-a", key_fingerprint("key-of-team-b"))
    assert api.get("key-of-team-a", job_a).status_code == 200
    assert api.get("key-of-team-b", job_b).status_code == 200
    assert api.get("key-of-team-a", job_b).status_code == 404
    assert api.get("key-of-team-b", job_a).status_code == 404
    assert api.get(DEFAULT_API_KEY, job_a).status_code == 404
    jobs = {job["id"]: job["tenant"] for job in api.emulator.jobs()}
    assert jobs == {job_a: "team-a", job_b: team_b}


def test_an_unknown_key_is_refused_and_creates_nothing(api: Api) -> None:
    api.emulator.add_tenant("key-of-team-a")

    refused = api.create("key-nobody-has")

    assert refused.status_code == api.refusal
    assert api.emulator.jobs() == []
    assert api.emulator.unauthorized_calls() == 1
    assert api.create(DEFAULT_API_KEY).status_code in (200, 201)  # the default key still works


def test_admin_counts_jobs_and_the_most_running_at_once_per_tenant(api: Api) -> None:
    # Given tenant A with two jobs running together, then one more after both ended
    api.emulator.add_tenant("key-of-team-a", label="team-a")
    api.emulator.add_tenant("key-of-team-b", label="team-b")
    api.created_id("key-of-team-a")
    api.created_id("key-of-team-a")
    api.created_id("key-of-team-b")
    during = api.emulator.tenants()
    wait_until(api.emulator.tenants, lambda stats: stats["team-a"]["running"] == 0)
    api.created_id("key-of-team-a")

    # When the stats are read over HTTP
    answer = httpx.get(f"{api.emulator.url}/_admin/tenants").json()

    # Then A had at most two at once, B one; calls are counted and no key is shown
    assert during["team-a"]["running"] == 2
    stats = answer["tenants"]
    assert stats["team-a"] == {"created": 3, "running": 1, "max_running": 2, "calls": 3}
    assert stats["team-b"]["max_running"] == 1
    assert stats[DEFAULT_TENANT]["created"] == 0
    assert answer["unauthorized_calls"] == 0
    assert "key-of-team" not in httpx.get(f"{api.emulator.url}/_admin/tenants").text


def test_tenants_are_added_over_http_without_echoing_the_key(api: Api) -> None:
    added = httpx.post(
        f"{api.emulator.url}/_admin/tenants", json={"key": "key-added-over-http", "label": "ops"}
    )
    unnamed = httpx.post(f"{api.emulator.url}/_admin/tenants", json={"key": "another-key"})
    malformed = httpx.post(f"{api.emulator.url}/_admin/tenants", json={"label": "no key"})

    assert (added.status_code, added.json()) == (201, {"tenant": "ops"})
    assert unnamed.json() == {"tenant": key_fingerprint("another-key")}
    assert "another-key" not in unnamed.text
    assert malformed.status_code == 400
    assert api.created_id("key-added-over-http")
    assert api.emulator.tenants()["ops"]["created"] == 1


def test_matatika_stop_by_another_tenant_is_404_and_a_stopped_job_stops_running() -> None:
    with MatatikaEmulator() as matatika:
        matatika.configure(queued=0.0, duration=60.0)
        matatika.add_tenant("key-of-team-a", label="team-a")
        matatika.add_tenant("key-of-team-b", label="team-b")
        api = Api(matatika, 401)
        job = api.created_id("key-of-team-a")
        url = f"{matatika.url}/api/jobs/{job}/stopped"

        by_other = httpx.put(url, headers=api.headers("key-of-team-b"))
        running = matatika.tenants()["team-a"]["running"]
        by_owner = httpx.put(url, headers=api.headers("key-of-team-a"))
        stats = matatika.tenants()["team-a"]

    assert (by_other.status_code, running) == (404, 1)
    assert by_owner.status_code == 202
    assert (stats["running"], stats["max_running"]) == (0, 1)


def test_matatika_pipelines_are_busy_per_tenant() -> None:
    with MatatikaEmulator() as matatika:
        matatika.configure(queued=0.0, duration=60.0)
        matatika.add_tenant("key-of-team-a")
        api = Api(matatika, 401)

        first = api.create("key-of-team-a", target="pl-shared")
        again = api.create("key-of-team-a", target="pl-shared")
        other_tenant = api.create(DEFAULT_API_KEY, target="pl-shared")

    assert (first.status_code, again.status_code, other_tenant.status_code) == (201, 409, 201)


def test_matatika_oauth_client_gets_tokens_of_its_own_tenant() -> None:
    with MatatikaEmulator() as matatika:
        matatika.configure(queued=0.0, duration=60.0)
        tenant = matatika.add_client("eval-client", "eval-secret", label="eval")
        token_url = f"{matatika.url}/oauth/token"
        form = {"grant_type": "client_credentials", "client_id": "eval-client"}

        granted = httpx.post(token_url, data={**form, "client_secret": "eval-secret"})
        denied = httpx.post(token_url, data={**form, "client_secret": "wrong"})
        default = httpx.post(
            token_url,
            data={**form, "client_id": "local-client", "client_secret": "local-secret"},
        )
        token = granted.json()["access_token"]
        api = Api(matatika, 401)
        job = api.created_id(token)

        assert tenant == "eval"
        assert denied.status_code == 401
        assert default.json()["access_token"] == DEFAULT_API_KEY
        assert token != DEFAULT_API_KEY
        assert api.get(token, job).status_code == 200
        assert api.get(DEFAULT_API_KEY, job).status_code == 404
        assert matatika.tenants()["eval"]["created"] == 1
        assert "eval-secret" not in httpx.get(f"{matatika.url}/_admin/tenants").text


def test_oauth_clients_are_refused_where_the_provider_takes_keys_only() -> None:
    with PixxelEmulator() as pixxel:
        answer = httpx.post(
            f"{pixxel.url}/_admin/tenants", json={"client_id": "c", "client_secret": "s"}
        )
    assert answer.status_code == 400


def test_accepting_any_key_makes_each_key_a_tenant() -> None:
    with DeepsetEmulator(api_key=None) as deepset:
        api = Api(deepset, 401)
        job = api.created_id("any-key-1")

        assert api.get("any-key-2", job).status_code == 404
        assert api.get("any-key-1", job).status_code == 200
        assert deepset.tenants()[key_fingerprint("any-key-1")]["created"] == 1


def test_a_job_runs_until_its_last_attempt_its_timeout_or_its_stop() -> None:
    from jobrelay_local.emulators import Behaviour, EmulatedJob

    def job(**behaviour: object) -> EmulatedJob:
        return EmulatedJob("j", "t", Behaviour().updated(behaviour), 100.0, 0.0, 0)

    retried = job(queued=1, duration=2, failed_attempts=1, max_attempts=2, retry_delay=0.5)
    timed_out = job(queued=1, duration=60, stopped_after=5)
    stuck = job(stuck=True)
    stopped = job(stuck=True)
    stopped.stopped_mono = 130.0
    refused = job()
    refused.rejected = True

    assert retried.active_until() == 100 + (1 + 2 + 0.5) + (1 + 2)
    assert timed_out.active_until() == 100 + 1 + 5
    assert stuck.active_until() is None
    assert stopped.active_until() == 130.0
    assert refused.active_until() == 100.0

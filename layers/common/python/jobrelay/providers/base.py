"""The provider port: what jobrelay needs from any job API, and what each adapter provides."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any, ClassVar, NamedTuple, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from jobrelay.errors import (
    ConfigurationError,
    FieldProblem,
    JobNotFound,
    ProviderProtocolError,
    ProviderRejected,
    ProviderUnavailable,
)
from jobrelay.models import JobRef, StatusReport
from jobrelay.observability import logger
from jobrelay.providers.http import ProviderHttp, read_json
from jobrelay.secrets import SecretKey

# Statuses a provider answers when it refuses a request for good (docs/providers.md, "Across
# providers": never retry other 4xx).
REJECTING_STATUS = frozenset({400, 403, 404, 405, 409, 410, 413, 415, 422})


def aware_time(value: object) -> datetime | None:
    """An ISO 8601 time from a provider as an aware time (UTC when the zone is omitted)."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


Listed = TypeVar("Listed")


def earliest_unclaimed(
    provider: str, candidates: list[tuple[datetime, str, Listed]], exclude: Collection[str]
) -> Listed | None:
    """Among the jobs a listing matched (created at, job id, job), the earliest that no other
    request has claimed: a request's first attempt is the earliest moment its job can exist.
    """
    left = [(created, job) for created, job_id, job in candidates if job_id not in exclude]
    if not left:
        return None
    if len(left) > 1:
        logger.warning("several jobs match an ambiguous create", provider=provider, count=len(left))
    return min(left, key=lambda pair: pair[0])[1]


def segment(value: object) -> str:
    """One URL path segment, percent-encoded so an id can never change the path."""
    return quote(str(value), safe="")


class CreatedJob(NamedTuple):
    """A job the provider has accepted: its id, how to reach it again, and its first status.
    (A NamedTuple, not a dataclass: making a dataclass compiles its methods, about a
    millisecond of every cold start.)"""

    remote_job_id: str
    locator: dict[str, str]
    report: StatusReport | None = None


class Provider(ABC):
    """One job API. Adapters raise the layer's typed errors, never httpx's."""

    # Registry facts (`jobrelay.registry`): the name requests and settings use, a display
    # title, the model of the request's `params`, and the public base URL the template
    # defaults to.
    name: ClassVar[str]
    title: ClassVar[str]
    params_model: ClassVar[type[BaseModel]]
    default_base_url: ClassVar[str]
    # The provider's public API hosts: where a connection may send its credential unless the
    # stack allows others (`<NAME>_ALLOWED_HOSTS`).
    public_hosts: ClassVar[tuple[str, ...]]
    # The credential forms a connection of this provider may give (`api_key`, `token`,
    # `client_credentials`).
    credential_forms: ClassVar[frozenset[str]] = frozenset({"api_key"})
    can_cancel: ClassVar[bool] = False

    def __init__(self, http: ProviderHttp, base_url: str, key: SecretKey) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.key = key

    # -- the port
    @abstractmethod
    def create(self, params: Any) -> CreatedJob:
        """Create the job described by the provider's params model."""

    @abstractmethod
    def get_status(self, job: JobRef) -> StatusReport:
        """One GET of the job, normalized."""

    def cancel(self, job: JobRef) -> bool:
        """Stop the job at the provider; False where the provider has no way to."""
        return False

    def validate(self, params: Any) -> dict[str, Any]:
        """Validate without creating anything (deepset `dry_run`)."""
        raise NotImplementedError(f"{self.name} has no validate-only call")

    def find_created(
        self, params: Any, since: datetime, *, exclude: Collection[str] = ()
    ) -> CreatedJob | None:
        """Look for a job this request created at or after `since` (ambiguous creates),
        passing over the jobs in `exclude` (other requests' claimed jobs)."""
        return None

    # -- shared plumbing
    def listed_since(
        self,
        path: str,
        since: datetime,
        *,
        pages: range,
        query: Callable[[int], dict[str, Any]],
        read_page: Callable[[Any], tuple[list[dict[str, Any]], bool]],
        created_key: str,
        page_size: int,
    ) -> list[tuple[datetime, dict[str, Any]]] | None:
        """The items of a newest-first, paged job listing created at or after `since`, with
        their creation times (reconciliation). Reads page after page until an item older
        than `since`, the last page (`read_page` answers the page's items and whether it is
        the last) or the end of `pages`. None when the listing itself is gone or closed to
        us (403, 404): the create that follows answers for good. Any other failure is raised:
        creating again without having looked could make a second job.
        """
        found: list[tuple[datetime, dict[str, Any]]] = []
        for page in pages:
            response = self.send("GET", path, idempotent=True, params=query(page))
            if response.status_code in (403, 404):
                return None
            if response.status_code != 200:
                raise self.listing_error(response)
            items, last_page = read_page(self.body(response))
            passed_window = False
            for item in items:
                created = aware_time(item.get(created_key))
                if created is None:
                    continue  # a job whose time cannot be read is never adopted
                if created < since:
                    passed_window = True  # newest first: the rest is older still
                    continue
                found.append((created, item))
            if passed_window or last_page or len(items) < page_size:
                return found
        logger.warning(
            "job listing longer than reconciliation reads", provider=self.name, pages=len(pages)
        )
        return found

    def auth_headers(self, *, refresh: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key.value(refresh=refresh)}"}

    def send(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        extra_headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        return self.http.request(
            method,
            self.base_url + path,
            idempotent=idempotent,
            headers={**self.auth_headers(), "Accept": "application/json", **(extra_headers or {})},
            on_unauthorized=lambda: self.auth_headers(refresh=True),
            **kwargs,
        )

    def ensure_found(self, response: httpx.Response, job: JobRef) -> None:
        if response.status_code in (404, 410):
            raise JobNotFound(f"{self.name} no longer knows job {job.remote_job_id}")

    def rejection(
        self, response: httpx.Response, problems: list[FieldProblem], message: str
    ) -> ProviderRejected:
        return ProviderRejected(
            f"{self.name} refused the request ({response.status_code}): {message}",
            status_code=response.status_code,
            problems=problems,
        )

    def tracking_failure(self, response: httpx.Response) -> Exception:
        """A job GET answered neither the job nor 404: retried, never the job's end.

        A 401/403 while following a job says nothing about the job (a rotated key, a proxy):
        the state machine retries and the deadline bounds how long.
        """
        if response.status_code in (401, 403):
            return ProviderUnavailable(
                f"{self.name} refused access while tracking ({response.status_code})",
                status_code=response.status_code,
            )
        return ProviderProtocolError(
            f"{self.name} answered an unexpected {response.status_code} while tracking"
        )

    def listing_error(self, response: httpx.Response) -> Exception:
        """A job listing (reconciliation) we cannot read: raised, never taken for "no job"."""
        if response.status_code == 401:
            return ConfigurationError(f"{self.name} refused the API key (401)")
        return ProviderProtocolError(
            f"{self.name} answered {response.status_code} to the job listing reconciliation needs"
        )

    def unexpected(self, response: httpx.Response) -> Exception:
        """A status we have no rule for: permanent 4xx, anything else a protocol error."""
        if response.status_code == 401:
            return ConfigurationError(f"{self.name} refused the API key (401)")
        if 400 <= response.status_code < 500:
            return self.rejection(response, [], "unexpected client error")
        return ProviderProtocolError(f"{self.name} answered an unexpected {response.status_code}")

    @staticmethod
    def body(response: httpx.Response) -> Any:
        return read_json(response)

"""The emulators' tenants: the accounts one provider API serves, each known by its keys (and
for OAuth by its clients and the tokens issued to them); whose each job is, and the most jobs
each tenant had unfinished at once. Admin views name a tenant by its label or by a
fingerprint of its key, never by the key itself."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from .jobs import AdminError, EmulatedJob, JsonObject

# The tenant of the key an emulator is started with (`api_key`), and of its OAuth client.
DEFAULT_TENANT = "default"
_MAX_LABEL = 64


def key_fingerprint(key: str) -> str:
    """A short one-way name for a key or client id: what admin views show instead of it."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass
class TenantBook:
    """Which credential belongs to which tenant. Not locked: the emulator calls it under its
    own lock. Registrations are configuration and outlive the emulator's `reset()`."""

    keys: dict[str, str] = field(default_factory=dict)
    clients: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Issued bearer tokens: token -> (tenant, monotonic expiry).
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)

    def add_key(self, key: str, label: str | None = None) -> str:
        """Accept `key` from now on, as tenant `label` (default: the key's fingerprint); a
        key already known keeps its tenant."""
        if not isinstance(key, str) or not key.strip():
            raise AdminError("a tenant key is a non-empty string")
        if key not in self.keys:
            self.keys[key] = _tenant_name(label, key)
        return self.keys[key]

    def add_client(self, client_id: str, client_secret: str, label: str | None = None) -> str:
        """Exchange these OAuth client credentials for tokens of tenant `label` (default: the
        client id's fingerprint)."""
        for what, value in (("client_id", client_id), ("client_secret", client_secret)):
            if not isinstance(value, str) or not value:
                raise AdminError(f"a tenant's {what} is a non-empty string")
        known = self.clients.get(client_id)
        tenant = known[1] if known else _tenant_name(label, client_id)
        self.clients[client_id] = (client_secret, tenant)
        return tenant

    def client_tenant(self, client_id: object, client_secret: object) -> str | None:
        """The tenant of these client credentials, None when they do not match."""
        if not isinstance(client_id, str) or not isinstance(client_secret, str):
            return None
        known = self.clients.get(client_id)
        if known is None or not hmac.compare_digest(known[0].encode(), client_secret.encode()):
            return None
        return known[1]

    def issue_token(self, tenant: str, lifetime: float, now: float) -> str:
        token = "emu-" + secrets.token_urlsafe(24)
        self.tokens[token] = (tenant, now + lifetime)
        return token

    def tenant_of(self, key: str, now: float) -> str | None:
        """The tenant of a registered key or of an unexpired issued token."""
        if key in self.keys:
            return self.keys[key]
        issued = self.tokens.get(key)
        if issued is not None and now < issued[1]:
            return issued[0]
        return None


def _tenant_name(label: str | None, credential: str) -> str:
    if label is None:
        return key_fingerprint(credential)
    if not isinstance(label, str) or not label.strip() or len(label) > _MAX_LABEL:
        raise AdminError(f"a tenant label is a non-empty string of at most {_MAX_LABEL}")
    return label


def tenant_stats(
    jobs: Iterable[EmulatedJob], calls: dict[str, int], known: Iterable[str], now: float
) -> dict[str, JsonObject]:
    """Per tenant: jobs `created`, `running` now (created, not yet ended, stopped or
    deleted), `max_running` (the most running at any one moment) and authenticated `calls`.

    A job is running from its creation until its clock ends it (its last attempt ends, the
    provider's timeout or a stop), so `max_running` is exact whenever it is read.
    """
    spans: dict[str, list[tuple[float, float | None]]] = {name: [] for name in known}
    spans.update({name: [] for name in calls})
    for job in jobs:
        if job.tenant is not None:
            spans.setdefault(job.tenant, []).append((job.created_mono, job.active_until()))
    stats: dict[str, JsonObject] = {}
    for tenant, intervals in sorted(spans.items()):
        edges: list[tuple[float, int]] = []
        for start, end in intervals:
            if end is not None and end <= start:
                continue  # refused at creation: never unfinished
            edges.append((start, 1))
            if end is not None:
                edges.append((end, -1))
        running = peak = 0
        # An end and a start at the same instant: the job ended first.
        for _, step in sorted(edges):
            running += step
            peak = max(peak, running)
        stats[tenant] = {
            "created": len(intervals),
            "running": sum(1 for start, end in intervals if _open(start, end, now)),
            "max_running": peak,
            "calls": calls.get(tenant, 0),
        }
    return stats


def _open(start: float, end: float | None, now: float) -> bool:
    return start <= now and (end is None or now < end)

"""Connections for the local stack (`jobrelay up --connections FILE`): read from a YAML or
JSON file, pointed at the emulators so no traffic leaves loopback, checked as the functions
check them, and stored as the secrets the deployed stack reads (`<CONNECTIONS_PREFIX><name>`).

The file is `{"connections": {"<name>": {provider, base_url?, api_key | token | client_id +
client_secret, max_in_flight?, max_creates_per_minute?, description?}}}`. Every problem is
reported on one line naming the connection and the field, never a value (it may be a key).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import TypeAdapter, ValidationError

if TYPE_CHECKING:
    from jobrelay.connections import ConnectionDocument

    from jobrelay_local.emulators import EmulatorServer

# The hosts a local connection may name: the template's `<Provider>AllowedHosts` locally.
LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost")
# Where a file is shape-checked before the emulators (and their ports) exist.
_PLACEHOLDER_EMULATOR = "http://127.0.0.1:9"


class ConnectionsFileError(ValueError):
    """A connections file that cannot be used; its message is one line without a value."""


@dataclass(frozen=True)
class LocalConnection:
    """One connection as the file gives it (its credential inside, so never in a repr)."""

    name: str
    entry: dict[str, Any] = field(repr=False)
    source: str = "connections"

    @property
    def provider(self) -> str:
        return str(self.entry["provider"])

    def problem(self, text: str) -> ConnectionsFileError:
        return ConnectionsFileError(f"{self.source}: connection {self.name!r}: {text}")


@dataclass(frozen=True)
class PlacedConnection:
    """A connection pointed at loopback and checked: the secret's value to store."""

    connection: LocalConnection
    value: dict[str, Any] = field(repr=False)
    note: str | None = None
    """What was pointed elsewhere (one line for the CLI), None if nothing was."""

    @property
    def name(self) -> str:
        return self.connection.name

    @property
    def provider(self) -> str:
        return self.connection.provider

    @property
    def base_url(self) -> str:
        return str(self.value["base_url"])

    def secret_string(self) -> str:
        return json.dumps(self.value)

    def tenant(self) -> dict[str, str]:
        """What an emulator needs to accept this connection's credential (its admin
        `POST /_admin/tenants` body), labelled with the connection's name."""
        value = self.value
        if "client_id" in value:
            return {
                "client_id": value["client_id"],
                "client_secret": value["client_secret"],
                "label": self.name,
            }
        return {"key": value.get("api_key") or value["token"], "label": self.name}


def read_connections(path: Path) -> list[LocalConnection]:
    """The connections in a YAML or JSON file, each shape-checked (`ConnectionsFileError`)."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConnectionsFileError(f"{path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConnectionsFileError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
    except yaml.YAMLError as exc:
        # Only the place: the parser's own message quotes the line, which may hold a key.
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConnectionsFileError(f"{path}: not YAML{where}") from None
    connections = parse_connections(data, source=path.name)
    for connection in connections:
        place(connection, _PLACEHOLDER_EMULATOR)
    return connections


def parse_connections(data: Any, *, source: str = "connections") -> list[LocalConnection]:
    """The connections of a parsed file: names and entries, before any check of a field."""
    from jobrelay.models import ConnectionName

    if not isinstance(data, Mapping) or set(data) != {"connections"}:
        raise ConnectionsFileError(f'{source}: expected {{"connections": {{name: {{...}}}}}}')
    entries = data["connections"]
    if not isinstance(entries, Mapping) or not entries:
        raise ConnectionsFileError(f"{source}: connections is an object of name: connection")
    names: TypeAdapter[str] = TypeAdapter(ConnectionName)
    connections: list[LocalConnection] = []
    for name, entry in entries.items():
        try:
            names.validate_python(name)
        except ValidationError:
            raise ConnectionsFileError(
                f"{source}: {str(name)[:64]!r} is not a connection name (letters, digits, "
                "_ and -, at most 64, starting with a letter or digit)"
            ) from None
        if not isinstance(entry, Mapping):
            raise ConnectionsFileError(f"{source}: connection {name!r}: expected an object")
        connections.append(LocalConnection(name=name, entry=dict(entry), source=source))
    return connections


def is_loopback(url: object) -> bool:
    if not isinstance(url, str):
        return False
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        return False
    return host in LOOPBACK_HOSTS or host == "::1" or host.startswith("127.")


def place(connection: LocalConnection, emulator_url: str | None) -> PlacedConnection:
    """The connection pointed at loopback and checked as the functions check it.

    A base URL that is absent or names another host becomes `emulator_url` (the
    provider's emulator); so does a Matatika OAuth client's token URL (the emulator's
    `/oauth/token`). `emulator_url` None: the provider has no emulator here, so only a
    connection that already names loopback can be used.
    """
    from jobrelay.registry import REGISTRY

    entry = dict(connection.entry)
    provider = entry.get("provider")
    if not isinstance(provider, str) or provider not in REGISTRY:
        raise connection.problem(f"provider: expected one of {', '.join(REGISTRY)}")
    moved: list[str] = []
    if not is_loopback(entry.get("base_url")):
        if emulator_url is None:
            raise connection.problem(
                f"base_url: {provider} has no emulator in this local stack (its base URL "
                "is not loopback); give the connection a loopback base_url"
            )
        moved.append(_was("base_url", entry))
        entry["base_url"] = emulator_url
    oauth = "client_id" in entry or "client_secret" in entry
    if oauth and not is_loopback(entry.get("token_url")):
        moved.append(_was("token_url", entry))
        entry["token_url"] = str(entry["base_url"]).rstrip("/") + "/oauth/token"
    _check(connection, entry)
    note = None
    if moved:
        note = (
            f"connection {connection.name!r} ({provider}): {' and '.join(moved)} -> "
            f"{entry['base_url']} (locally no traffic leaves loopback)"
        )
    return PlacedConnection(connection, entry, note)


def _was(name: str, entry: Mapping[str, Any]) -> str:
    """How the note names a URL it moved: its host (never a path or query), or its absence."""
    if name not in entry:
        return f"no {name}"
    try:
        host = urlsplit(str(entry[name])).hostname
    except ValueError:
        host = None
    return f"{name} {host}" if host else name


def same_server(url: str, other: str) -> bool:
    """Whether two loopback URLs reach the same port (127.0.0.1 and localhost alike)."""
    first, second = urlsplit(url), urlsplit(other)
    return is_loopback(url) and is_loopback(other) and first.port == second.port


def _check(connection: LocalConnection, entry: dict[str, Any]) -> ConnectionDocument:
    from jobrelay.connections import ConnectionDocument, check_host

    try:
        document = ConnectionDocument.model_validate(entry)
    except ValidationError as exc:
        raise connection.problem(_first_problems(exc)) from None
    try:
        check_host(document.base_url, LOOPBACK_HOSTS, what="base_url")
        if document.token_url is not None:
            check_host(document.token_url, LOOPBACK_HOSTS, what="token_url")
    except ValueError as exc:
        raise connection.problem(str(exc)) from None
    return document


def _first_problems(exc: ValidationError) -> str:
    """Each problem by field, never quoting a value (the parts pydantic would echo)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def store_connections(
    secretsmanager: Any, prefix: str, placed: Sequence[PlacedConnection]
) -> list[str]:
    """Create (or update) each connection's secret `<prefix><name>`; returns the names."""
    names = []
    for connection in placed:
        name = f"{prefix}{connection.name}"
        try:
            secretsmanager.create_secret(Name=name, SecretString=connection.secret_string())
        except secretsmanager.exceptions.ResourceExistsException:
            secretsmanager.put_secret_value(SecretId=name, SecretString=connection.secret_string())
        names.append(name)
    return names


def add_connections(
    connections: Sequence[LocalConnection],
    *,
    secretsmanager: Any,
    prefix: str,
    emulator_url: Callable[[str], str | None],
    own_emulators: Mapping[str, EmulatorServer | str],
) -> list[PlacedConnection]:
    """Point each connection at loopback (`emulator_url(provider)`) and check it, then
    store them all and make the stack's own emulators (`own_emulators`, in this process or
    by URL) accept each one's credential. Nothing is stored when one fails the check."""
    placed = [place(connection, emulator_url(connection.provider)) for connection in connections]
    store_connections(secretsmanager, prefix, placed)
    for connection in placed:
        emulator = own_emulators.get(connection.provider)
        url = emulator if isinstance(emulator, str) or emulator is None else emulator.url
        if emulator is not None and url is not None and same_server(connection.base_url, url):
            register_tenant(emulator, connection)
    return placed


def register_tenant(emulator: EmulatorServer | str, connection: PlacedConnection) -> str:
    """Make an emulator (in this process, or at a loopback URL) accept the connection's
    credential as a tenant of its own; returns the tenant's name."""
    tenant = connection.tenant()
    if not isinstance(emulator, str):
        label = tenant.pop("label")
        if "client_id" in tenant:
            return emulator.add_client(tenant["client_id"], tenant["client_secret"], label)
        return emulator.add_tenant(tenant["key"], label)
    import httpx

    if not is_loopback(emulator):
        raise ConnectionsFileError(f"{emulator} is not a loopback emulator")
    answer = httpx.post(f"{emulator.rstrip('/')}/_admin/tenants", json=tenant, timeout=5)
    if answer.status_code != 201:
        raise connection.connection.problem(
            f"the {connection.provider} emulator refused its credential ({answer.status_code})"
        )
    return str(answer.json()["tenant"])


def describe(connection: PlacedConnection) -> dict[str, Any]:
    """The connection without its credential (for the CLI and the state file)."""
    hidden = {"api_key", "token", "client_secret"}
    return {key: value for key, value in connection.value.items() if key not in hidden}

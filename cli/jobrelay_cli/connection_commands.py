"""`jobrelay connections list`: the connections a stack keeps (its secrets under the
`ConnectionsSecretPrefix` output), each with its provider, host, credential form and limits,
and the slots it holds now; never a credential."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from botocore.exceptions import ClientError
from jobrelay.connections import ConnectionDocument, describe
from jobrelay.models import ConnectionName
from jobrelay.ports import SlotsView
from jobrelay.registry import REGISTRY
from pydantic import TypeAdapter, ValidationError
from rich.table import Table

from jobrelay_cli.console import out
from jobrelay_cli.errors import CommandError, operation
from jobrelay_cli.options import Endpoint, Region, StackName
from jobrelay_cli.target import Stack, connect
from jobrelay_cli.tracking import LimitsReader, LimitsTableReader

JsonOutput = Annotated[bool, typer.Option("--json", help="Print JSON (one object per line).")]
_NAME = TypeAdapter(ConnectionName)

connections_app = typer.Typer(
    help="A stack's connections: the provider accounts its requests choose with `connection`.",
    no_args_is_help=True,
)


@dataclass(frozen=True)
class ListedConnection:
    """One connection as the CLI shows it: its document, or why it cannot be used (a
    malformed document, a name no request can give); `slots` once it has any."""

    name: str
    document: ConnectionDocument | None = None
    problem: str | None = None
    slots: SlotsView | None = None

    def as_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"name": self.name}
        if self.document is not None:
            shown.update(describe(self.document), credential=credential_form(self.document))
        if self.problem is not None:
            shown["problem"] = self.problem
        if self.slots is not None:
            shown.update(in_flight=len(self.slots.held), waiting=self.slots.waiting)
        return shown


def credential_form(document: ConnectionDocument) -> str:
    """Which credential the document holds, never its value."""
    if document.api_key is not None:
        return "api_key"
    return "token" if document.token is not None else "client_credentials"


def secret_names(secretsmanager: Any, prefix: str) -> Iterator[str]:
    """The secrets under the prefix (Secrets Manager's name filter is a prefix match; the
    names are checked again, since it ignores case)."""
    kwargs: dict[str, Any] = {"Filters": [{"Key": "name", "Values": [prefix]}]}
    while True:
        page = secretsmanager.list_secrets(**kwargs)
        for secret in page.get("SecretList", []):
            name = str(secret.get("Name", ""))
            if name.startswith(prefix):
                yield name
        if not page.get("NextToken"):
            return
        kwargs["NextToken"] = page["NextToken"]


def read_connection(secretsmanager: Any, secret_name: str, name: str) -> ListedConnection:
    """A connection's document; what is wrong with it named by field, never by value."""
    try:
        _NAME.validate_python(name)
    except ValidationError:
        return ListedConnection(
            name, problem="no request can name it (letters, digits, _ and -, at most 64)"
        )
    try:
        raw = secretsmanager.get_secret_value(SecretId=secret_name)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "an error")
        return ListedConnection(name, problem=f"its secret cannot be read: {code}")
    try:
        document = ConnectionDocument.model_validate_json(raw.get("SecretString") or "")
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'document'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        return ListedConnection(name, problem=f"malformed: {problems}"[:500])
    return ListedConnection(name, document)


def list_connections(
    secretsmanager: Any, prefix: str, limits: LimitsReader | None
) -> list[ListedConnection]:
    """The stack's connections by name, each with its slots when it has limits."""
    listed = []
    for secret_name in sorted(secret_names(secretsmanager, prefix)):
        connection = read_connection(secretsmanager, secret_name, secret_name[len(prefix) :])
        if limits is not None and connection.document is not None:
            connection = ListedConnection(
                connection.name, connection.document, slots=limits.view(connection.name)
            )
        listed.append(connection)
    return listed


def defaults_left(listed: list[ListedConnection]) -> list[str]:
    """The providers whose default connection is the stack's own configuration (no
    connection of their name overrides it)."""
    names = {connection.name for connection in listed}
    return [provider for provider in REGISTRY if provider not in names]


def connections_table(listed: list[ListedConnection], defaults: list[str]) -> Table:
    table = Table(title=f"{len(listed)} connection(s) and {len(defaults)} provider default(s)")
    for column in ("connection", "provider", "host", "credential", "limits", "in use", "about"):
        table.add_column(column, overflow="fold")
    for connection in listed:
        document = connection.document
        if document is None:
            table.add_row(connection.name, "", "", "", "", "", connection.problem or "")
            continue
        in_use = ""
        if connection.slots is not None:
            in_use = f"{len(connection.slots.held)} held, {connection.slots.waiting} waiting"
        table.add_row(
            connection.name,
            document.provider,
            host_of(document),
            credential_form(document),
            limits_of(document),
            in_use,
            document.description or "",
        )
    for provider in defaults:
        table.add_row(provider, provider, "", "", "none", "", "default")
    if defaults:
        parameters = ", ".join(
            f"{REGISTRY[p].base_url_parameter}/{REGISTRY[p].secret_parameter}" for p in defaults
        )
        table.caption = f"default: the stack's own configuration ({parameters})"
    return table


def host_of(document: ConnectionDocument) -> str:
    """The base URL's host, with its port when it is not the scheme's own."""
    url = document.base_url
    usual = {"https": 443, "http": 80}.get(url.scheme)
    host = url.host or ""
    return host if url.port in (None, usual) else f"{host}:{url.port}"


def limits_of(document: ConnectionDocument) -> str:
    """`2 in flight, 30/min`, or `none`."""
    limits = []
    if document.max_in_flight is not None:
        limits.append(f"{document.max_in_flight} in flight")
    if document.max_creates_per_minute is not None:
        limits.append(f"{document.max_creates_per_minute}/min")
    return ", ".join(limits) or "none"


@connections_app.command("list")
@operation
def list_command(
    as_json: JsonOutput = False,
    endpoint: Endpoint = None,
    stack_name: StackName = None,
    region: Region = None,
) -> None:
    """Each connection's provider, host, credential form, limits and slots in use."""
    stack = connect(endpoint, stack_name, region)
    listed = list_connections(stack.client("secretsmanager"), _prefix(stack), _limits(stack))
    defaults = defaults_left(listed)
    if as_json:
        for connection in listed:
            out.print(json.dumps(connection.as_json()), markup=False, highlight=False)
        for provider in defaults:
            line = {"name": provider, "provider": provider, "default": True}
            out.print(json.dumps(line), markup=False, highlight=False)
        return
    out.print(connections_table(listed, defaults))


def _prefix(stack: Stack) -> str:
    prefix = stack.outputs.get("ConnectionsSecretPrefix")
    if not prefix:
        raise CommandError(
            f"stack {stack.name!r} keeps no connections (no ConnectionsSecretPrefix output: "
            "deployed before connections); each request uses its provider's configuration"
        )
    return prefix


def _limits(stack: Stack) -> LimitsReader | None:
    table = stack.outputs.get("LimitsTableName")
    return LimitsTableReader(table, client=stack.client("dynamodb")) if table else None

"""The arguments and options the commands share, and the reading of request FILES and
connections files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from jobrelay_cli.console import console
from jobrelay_cli.requests_io import RequestFileError, read_requests

if TYPE_CHECKING:
    from jobrelay_local.connections_file import LocalConnection

Files = Annotated[list[Path], typer.Argument(help="JSON files: a request object or an array.")]
JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print each outcome event as one JSON line.")
]
Endpoint = Annotated[
    str | None, typer.Option(help="AWS endpoint (default: jobrelay up's, else AWS).")
]
StackName = Annotated[
    str | None,
    typer.Option("--stack", help="A deployed jobrelay stack's name (default: jobrelay up's)."),
]
ConnectionsFile = Annotated[
    Path | None,
    typer.Option(
        "--connections",
        help="YAML or JSON file of connections ({connections: {name: {provider, api_key, "
        "...}}}), stored in the local stack and pointed at its emulators.",
    ),
]
Region = Annotated[
    str | None, typer.Option(help="The deployed stack's AWS region (default: AWS's chain).")
]


def requests_from(files: list[Path]) -> list[dict[str, Any] | str]:
    """The requests in the files; exits with status 2 if there are none or one is unreadable."""
    try:
        requests = read_requests(files)
    except RequestFileError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    if not requests:
        console.print("[red]error:[/] no requests in the given files")
        raise typer.Exit(2)
    return requests


def connections_from(path: Path | None) -> list[LocalConnection]:
    """The connections in the file, each checked; exits with status 2 naming the connection
    and field of the first problem (never a value)."""
    if path is None:
        return []
    from jobrelay_local.connections_file import ConnectionsFileError, read_connections

    try:
        return read_connections(path)
    except ConnectionsFileError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc

"""What a failed command prints: one line that says what to do, and its exit code (2 for how
the command was called, 1 for an operation that failed); a traceback only with `--debug`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.markup import escape

from jobrelay_cli.console import console

P = ParamSpec("P")
R = TypeVar("R")
# Set by the app's `--debug` option before a command runs.
debug = False


class CommandError(Exception):
    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _aws_message(exc: BotoCoreError | ClientError) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"AWS refused {exc.operation_name}: {error.get('Code')}: {error.get('Message')}"
    return f"AWS could not be reached: {exc}"


def operation(command: Callable[P, R]) -> Callable[P, R]:
    """Run a command; its failures end in one line on stderr and an exit code."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except CommandError as exc:
            if debug:
                raise
            console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except (BotoCoreError, ClientError) as exc:
            if debug:
                raise
            console.print(f"[red]error:[/] {escape(_aws_message(exc))}", highlight=False)
            raise typer.Exit(1) from None

    return run

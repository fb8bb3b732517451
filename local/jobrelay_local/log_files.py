"""Where the local stack's logs go: the functions' logs and metrics, and the libraries' own
logs and warnings, to files, so the terminal shows the jobs and their outcomes."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager, redirect_stdout
from pathlib import Path
from typing import TextIO

AWS_LOGGERS = ("moto", "werkzeug", "botocore", "boto3", "urllib3", "samtranslator", "cfnlint")
EMULATOR_LOGGERS = ("jobrelay_local.emulators",)
LIBRARY_WARNINGS = logging.getLogger("jobrelay_local.library_warnings")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def logs_to_files(directory: Path) -> Iterator[None]:
    """Send the AWS side's and the emulators' logs to files in `directory` for the block.

    `moto.log` takes moto, its werkzeug server, botocore, samtranslator and the warnings
    raised in third-party code (moto's "Tried to parse AWS::…"); `emulators.log` the provider
    emulators'. jobrelay's own warnings and every exception still reach the terminal.
    """
    directory.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        stack.enter_context(_routed((*AWS_LOGGERS, LIBRARY_WARNINGS.name), directory / "moto.log"))
        stack.enter_context(_routed(EMULATOR_LOGGERS, directory / "emulators.log"))
        stack.enter_context(_library_warnings_logged())
        yield


@contextmanager
def function_logs_to(path: Path) -> Iterator[None]:
    """The functions' JSON log lines to a file instead of stdout, for the block."""
    from jobrelay.observability import logger

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logger.registered_handler
    with path.open("a", encoding="utf-8") as stream:
        previous = handler.setStream(stream)  # type: ignore[attr-defined]
        try:
            yield
        finally:
            handler.setStream(previous)  # type: ignore[attr-defined]


@contextmanager
def stdout_to(path: Path) -> Iterator[None]:
    """What is printed (the functions' EMF metrics) to a file, for the block.

    Powertools prints EMF metrics to stdout, as Lambda expects; locally they go to a file so
    stdout stays the CLI's (outcome events).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as stream, redirect_stdout(stream):
        yield


@contextmanager
def _routed(names: Iterable[str], path: Path) -> Iterator[None]:
    """These loggers write to `path` only (not to the terminal through the root logger).

    Loggers without a level of their own log from INFO on (the emulators' "listening on",
    the moto server's announcement): a file has room for what a terminal has not.
    """
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    loggers = [logging.getLogger(name) for name in names]
    saved = [(logger.propagate, logger.level) for logger in loggers]
    for logger in loggers:
        # A handler of its own also stops werkzeug from adding a stderr handler.
        logger.addHandler(handler)
        logger.propagate = False
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for logger, (propagate, previous_level) in zip(loggers, saved, strict=True):
            logger.removeHandler(handler)
            logger.propagate = propagate
            logger.setLevel(previous_level)
        handler.close()


@contextmanager
def _library_warnings_logged() -> Iterator[None]:
    """Warnings raised in third-party code are logged; others are shown as before.

    `warnings.showwarning` is the documented hook for where a warning goes; filters
    (`-W`, pytest's `filterwarnings`) still decide whether it is shown at all.
    """
    previous = warnings.showwarning

    def showwarning(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if _third_party(filename):
            text = warnings.formatwarning(message, category, filename, lineno, line)
            LIBRARY_WARNINGS.warning("%s", text.rstrip())
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning
    try:
        yield
    finally:
        warnings.showwarning = previous


def _third_party(filename: str) -> bool:
    parts = Path(filename).parts
    return "site-packages" in parts or "dist-packages" in parts

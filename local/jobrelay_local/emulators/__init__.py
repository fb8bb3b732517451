"""Provider emulators: real HTTP servers on loopback that behave like the job providers' APIs."""

from __future__ import annotations

from collections.abc import Mapping

from .base import DEFAULT_API_KEY, AdminError, Behaviour, EmulatorServer, Fault
from .deepset import DeepsetEmulator
from .matatika import DEFAULT_WORKSPACE_ID, MatatikaEmulator
from .pixxel import PixxelEmulator

EMULATORS: dict[str, type[EmulatorServer]] = {
    "deepset": DeepsetEmulator,
    "pixxel": PixxelEmulator,
    "matatika": MatatikaEmulator,
}


def start_all(
    api_keys: Mapping[str, str | None] | None = None,
    *,
    host: str = "127.0.0.1",
    ports: Mapping[str, int] | None = None,
    defaults: Behaviour | None = None,
) -> dict[str, EmulatorServer]:
    """Start one emulator per provider (keyed by provider name); stop them with `stop_all`.

    A provider missing from `api_keys` accepts `DEFAULT_API_KEY`; a `None` key accepts any.
    """
    keys = api_keys or {}
    started: dict[str, EmulatorServer] = {}
    try:
        for name, emulator_class in EMULATORS.items():
            emulator = emulator_class(
                api_key=keys.get(name, DEFAULT_API_KEY),
                host=host,
                port=(ports or {}).get(name, 0),
                defaults=defaults,
            )
            started[name] = emulator.start()
    except BaseException:
        stop_all(started)
        raise
    return started


def stop_all(emulators: Mapping[str, EmulatorServer]) -> None:
    for emulator in emulators.values():
        emulator.stop()


__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_WORKSPACE_ID",
    "EMULATORS",
    "AdminError",
    "Behaviour",
    "DeepsetEmulator",
    "EmulatorServer",
    "Fault",
    "MatatikaEmulator",
    "PixxelEmulator",
    "start_all",
    "stop_all",
]

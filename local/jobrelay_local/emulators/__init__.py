"""Provider emulators: real HTTP servers on loopback that behave like the job providers' APIs.

One module per provider of the registry, `jobrelay_local.emulators.<name>`, exposing
`EMULATOR` (its server class) and `sample_params(request_id)` (the params of a valid request).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType

from jobrelay.registry import PROVIDER_NAMES

from .faults import Fault
from .jobs import AdminError, Behaviour, EmulatedJob, JsonObject
from .matatika import DEFAULT_WORKSPACE_ID
from .server import DEFAULT_API_KEY, EmulatorServer
from .tenants import DEFAULT_TENANT, key_fingerprint


def emulator_module(provider: str) -> ModuleType:
    """The emulator module of a registry provider; it fails naming what is missing."""
    module = importlib.import_module(f"{__name__}.{provider}")
    emulator = getattr(module, "EMULATOR", None)
    if not (isinstance(emulator, type) and issubclass(emulator, EmulatorServer)):
        raise TypeError(f"{module.__name__}.EMULATOR must be an EmulatorServer subclass")
    if not callable(getattr(module, "sample_params", None)):
        raise TypeError(f"{module.__name__} must define sample_params(request_id)")
    return module


def sample_params(provider: str, request_id: str) -> JsonObject:
    """The params of a valid request to `provider` (its emulator module's samples)."""
    params: JsonObject = emulator_module(provider).sample_params(request_id)
    return params


EMULATORS: dict[str, type[EmulatorServer]] = {
    name: emulator_module(name).EMULATOR for name in PROVIDER_NAMES
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
    "DEFAULT_TENANT",
    "DEFAULT_WORKSPACE_ID",
    "EMULATORS",
    "AdminError",
    "Behaviour",
    "EmulatedJob",
    "EmulatorServer",
    "Fault",
    "emulator_module",
    "key_fingerprint",
    "sample_params",
    "start_all",
    "stop_all",
]

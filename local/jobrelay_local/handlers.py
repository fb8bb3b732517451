"""The functions' code, imported from their code directories, and their environments put
where the in-process handlers read them (`os.environ`)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import cast

from jobrelay_local.deployment import DeployedStack, FunctionSpec
from jobrelay_local.lambdas import Handler

_import_lock = threading.Lock()


def load_handler(spec: FunctionSpec) -> Handler:
    """Import the function's handler module from its code directory under a unique name."""
    module_path, _, attribute = spec.handler.rpartition(".")
    source = spec.code_dir / (module_path.replace(".", "/") + ".py")
    suffix = "" if module_path == "app" else "__" + module_path.replace(".", "_")
    module_name = re.sub(r"\W", "_", f"jobrelay_fn_{spec.code_dir.name}{suffix}")
    with _import_lock:
        module: ModuleType | None = sys.modules.get(module_name)
        if module is None or getattr(module, "__file__", None) != str(source):
            import_spec = importlib.util.spec_from_file_location(module_name, source)
            if import_spec is None or import_spec.loader is None:
                raise ImportError(f"cannot import {source}")
            module = importlib.util.module_from_spec(import_spec)
            sys.modules[module_name] = module
            try:
                import_spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[module_name]
                raise
    handler = getattr(module, attribute)
    if not callable(handler):
        raise TypeError(f"{spec.handler} in {spec.code_dir} is not callable")
    return cast(Handler, handler)


def load_handlers(stack: DeployedStack) -> dict[str, Handler]:
    """Every function's handler, keyed by physical function name (for `route_lambda_invokes`)."""
    return {spec.function_name: load_handler(spec) for spec in stack.functions.values()}


def merged_environment(stack: DeployedStack) -> dict[str, str]:
    """All functions' environments in one map; raises if two functions disagree on a name."""
    merged: dict[str, str] = {}
    for spec in stack.functions.values():
        for name, value in spec.environment.items():
            if merged.setdefault(name, value) != value:
                raise ValueError(
                    f"functions disagree on {name}: {merged[name]!r} vs {value!r} "
                    f"({spec.logical_id}); use function_environment() per call instead"
                )
    return merged


def apply_environment(stack: DeployedStack) -> dict[str, str]:
    """Put every function's environment into `os.environ` at once; return what was set.

    In-process handlers share one `os.environ`, and setting it per call would race between
    threads (Step Functions executions and the SQS poller run concurrently). The template's
    functions agree wherever their variables overlap (Globals plus CreateJob's additions),
    so the union is each function's environment plus variables it does not read.
    """
    merged = merged_environment(stack)
    os.environ.update(merged)
    return merged


@contextlib.contextmanager
def function_environment(spec: FunctionSpec) -> Iterator[None]:
    """Set `os.environ` to include the function's environment for the block, then restore.

    Not thread-safe (one process has one environment): for concurrent handlers use
    `apply_environment` once instead.
    """
    previous = {name: os.environ.get(name) for name in spec.environment}
    os.environ.update(spec.environment)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

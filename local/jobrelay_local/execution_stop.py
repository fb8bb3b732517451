"""A local stack's Step Functions executions end with the stack: at stop, every execution of
its state machines still running is stopped and its interpreter thread waited for, so
nothing of one stack acts after it stopped.

moto's execution threads outlive `mock_aws().stop()` (and a moto server's): an execution
left in a Wait state wakes up later and runs its next Lambda task against whatever moto is
active by then, the next test's stack included (the handlers read the process's
environment, so they wrote to that stack's tables and queue: CI once saw a request of the
limits tests time out in the fault suite's stack).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from unittest import mock

LOG = logging.getLogger(__name__)
STOP_ERROR = "LocalStackStopped"
STOP_CAUSE = "the local stack stopped"


@contextlib.contextmanager
def executions_end_with_the_stack(
    state_machine_arns: Iterable[str], *, timeout: float = 30.0
) -> Iterator[None]:
    """For the block, note the thread of each execution moto starts; at its end, stop every
    execution of these state machines that is still running and wait (up to `timeout` in
    all) for each of their threads to end.

    Stopping wakes an execution in a Wait state at once; a task under way (a Lambda handler
    running) finishes first, as on AWS. Only the outermost thread of each execution is
    waited for: it ends after the interpreter's own threads have (moto joins them).
    """
    from moto.stepfunctions.parser.backend.execution_worker import (
        ExecutionWorker,
        SyncExecutionWorker,
    )

    arns = set(state_machine_arns)
    threads: dict[ExecutionWorker, threading.Thread] = {}
    lock = threading.Lock()
    execution_logic: Callable[[ExecutionWorker], None] = ExecutionWorker._execution_logic

    def execution_logic_noted(worker: ExecutionWorker) -> None:
        if not isinstance(worker, SyncExecutionWorker):  # a sync one runs in its caller
            with lock:
                threads[worker] = threading.current_thread()
        execution_logic(worker)

    with mock.patch.object(ExecutionWorker, "_execution_logic", execution_logic_noted):
        try:
            yield
        finally:
            deadline = time.monotonic() + timeout
            executions = _executions_of(arns)
            for execution in executions:
                if execution.status == "RUNNING":
                    _stop(execution, deadline)
            for execution in executions:
                worker = execution.exec_worker
                with lock:
                    thread = threads.get(worker) if worker is not None else None
                if thread is None or thread is threading.current_thread():
                    continue
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
                if thread.is_alive():
                    LOG.warning(
                        "execution %s still running %.0f s after the stack's stop",
                        execution.exec_arn,
                        timeout,
                    )


def _executions_of(state_machine_arns: set[str]) -> list[Any]:
    """moto's executions of these state machines, in every account and region it holds."""
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    executions: list[Any] = []
    for account_id in list(stepfunctions_parser_backends):
        for region in list(stepfunctions_parser_backends[account_id]):
            backend = stepfunctions_parser_backends[account_id][region]
            for state_machine in list(backend.state_machines):
                if state_machine.arn in state_machine_arns:
                    executions.extend(list(state_machine.executions))
    return executions


def _stop(execution: Any, deadline: float) -> None:
    """StopExecution, once the execution's interpreter has begun (before, moto cannot)."""
    worker = execution.exec_worker
    while worker is not None and worker.env is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if worker is None or worker.env is None:
        LOG.warning("execution %s never began; not stopped", execution.exec_arn)
        return
    execution.stop(
        stop_date=datetime.datetime.now(tz=datetime.UTC), error=STOP_ERROR, cause=STOP_CAUSE
    )

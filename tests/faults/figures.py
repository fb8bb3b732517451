"""The fault suite's summary figures: kept in the config's stash by the run that computed
them (`fault_run`), carried from a pytest-xdist worker to the controller, and printed at the
end of the whole run (tests/conftest.py holds the hooks: the controller of an xdist run
loads that conftest, never the fault suite's own)."""

from __future__ import annotations

from typing import Any

import pytest

FIGURES_KEY = pytest.StashKey[dict[str, Any]]()
# The figures' key in an xdist worker's `workeroutput` (sent to the controller at its end).
WORKEROUTPUT_KEY = "jobrelay_fault_suite_figures"
TITLE = "jobrelay fault suite figures"

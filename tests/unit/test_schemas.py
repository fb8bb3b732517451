"""The committed JSON Schemas must match the models."""

from __future__ import annotations

from pathlib import Path

from jobrelay.schemas import render, schemas

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"


def test_committed_schemas_are_current():
    for name, schema in schemas().items():
        committed = (SCHEMAS_DIR / name).read_text(encoding="utf-8")
        assert committed == render(schema), f"schemas/{name} is stale: run `make schemas`"

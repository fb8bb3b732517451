"""The project's `template.yaml`, read as plain dicts: what `sam deploy` and the local stack
deploy, and where the schedules come from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

PROJECT_ROOT: Path = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE: Path = PROJECT_ROOT / "template.yaml"


def load_template(path: Path | str = DEFAULT_TEMPLATE) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template (YAML short forms included) into plain dicts."""
    from cfnlint.decode import decode

    template, matches = decode(str(path))
    if template is None or matches:
        problems = "; ".join(str(m) for m in matches) or "empty template"
        raise ValueError(f"cannot parse {path}: {problems}")
    # cfn-lint's nodes carry line marks; a JSON round trip leaves plain dicts and lists.
    return cast(dict[str, Any], json.loads(json.dumps(template)))

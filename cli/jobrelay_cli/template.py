"""The project's `template.yaml`, read as plain dicts: what `sam deploy` and the local stack
deploy, and where the schedules come from."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any, cast

PROJECT_ROOT: Path = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE: Path = PROJECT_ROOT / "template.yaml"

# Each template's parse, as JSON text, keyed on the file and its content (a test run deploys
# the same template.yaml dozens of times, and cfn-lint's parse is a good part of a second).
_parsed: dict[tuple[str, str], str] = {}
_parsed_lock = threading.Lock()


def load_template(path: Path | str = DEFAULT_TEMPLATE) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template (YAML short forms included) into plain dicts.

    A file parsed before, unchanged since (the same bytes), is not parsed again; each call
    returns a new copy, which the caller may change.
    """
    resolved = Path(path).resolve()
    key = (str(resolved), hashlib.sha256(resolved.read_bytes()).hexdigest())
    with _parsed_lock:
        text = _parsed.get(key)
    if text is None:
        text = _parse(resolved)
        with _parsed_lock:
            _parsed[key] = text
    return cast(dict[str, Any], json.loads(text))


def _parse(path: Path) -> str:
    from cfnlint.decode import decode

    template, matches = decode(str(path))
    if template is None or matches:
        problems = "; ".join(str(m) for m in matches) or "empty template"
        raise ValueError(f"cannot parse {path}: {problems}")
    # cfn-lint's nodes carry line marks; a JSON round trip leaves plain dicts and lists.
    return json.dumps(template)

"""Cold start in instructions: each function, its dependency floor and its design floor
(section 2's children, `bench.coldstart`), each once under valgrind's callgrind, counted
from a new process to its first event handled. Unlike the timed rounds these counts do not
move with the shared machine's load (`PYTHONHASHSEED=0`), so a change of a few percent
shows. Not part of `make bench`: it needs valgrind, and takes a few minutes.

    python -m bench.instructions [--only CreateJob] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.coldstart import CHILD, HANDLERS, MARK, checked, prepared
from bench.common import ROOT


def _instructions(
    valgrind: str, kind: str, options: dict[str, Any], blocked: str, env: dict[str, str]
) -> float:
    """Millions of instructions the child ran until its first event was handled."""
    with tempfile.TemporaryDirectory(prefix="jobrelay-callgrind-") as scratch:
        out = Path(scratch) / "cg"
        process = subprocess.run(  # noqa: S603 - valgrind running our own interpreter
            [
                valgrind,
                "--tool=callgrind",
                "--dump-before=os_getppid*",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-c",
                CHILD,
                blocked,
                kind,
                json.dumps({**options, "mark_handled": True}),
            ],
            capture_output=True,
            text=True,
            env={**env, "PYTHONHASHSEED": "0"},
            cwd=ROOT,
            check=False,
        )
        report = [line for line in process.stdout.splitlines() if line.startswith(MARK)]
        if process.returncode or not report:
            raise RuntimeError(f"{kind} under callgrind failed: {process.stderr[-2000:]}")
        checked(kind, json.loads(report[0][len(MARK) :]))
        # The dump at the mark holds everything up to it; the last file, the exit.
        parts = [p for p in Path(scratch).glob("cg.*") if p.suffix[1:].isdigit()]
        if not parts:
            raise RuntimeError(f"{kind}: callgrind dumped nothing at the mark")
        return sum(_summary(p) for p in parts) / 1e6


def _summary(path: Path) -> int:
    found = re.search(r"^summary: (\d+)", path.read_text(), re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no summary in {path}")
    return int(found.group(1))


def run(valgrind: str, names: tuple[str, ...]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with prepared() as bench:
        for name in names:
            function = _instructions(
                valgrind, name, bench.function(name, "callgrind"), bench.blocked, bench.env
            )
            floor = _instructions(valgrind, "floor", bench.floors[name], bench.blocked, bench.env)
            design = _instructions(
                valgrind, "floor", bench.design_floors[name], bench.blocked, bench.env
            )
            results[name] = {
                "function_M": round(function, 1),
                "floor_M": round(floor, 1),
                "design_floor_M": round(design, 1),
                "to_floor": round(function / floor, 3),
                "to_design_floor": round(function / design, 3),
                "design_floor_to_floor": round(design / floor, 3),
                "powertools": bench.calls[name]["powertools"],
                "aws_operations": bench.calls[name]["aws_operations"],
            }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--only", action="append", choices=HANDLERS, metavar="FUNCTION")
    parser.add_argument("--output", type=Path, help="also write the counts here (JSON)")
    args = parser.parse_args(argv)
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("error: bench.instructions needs valgrind on PATH (apt install valgrind)")
        return 2
    results = run(valgrind, tuple(args.only or HANDLERS))
    print(
        "| function | instructions to first event handled | floor | design floor | to floor "
        "| to design floor | design floor to floor |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['function_M']:,.0f} M | {r['floor_M']:,.0f} M | "
            f"{r['design_floor_M']:,.0f} M | {r['to_floor']:.3f} | {r['to_design_floor']:.3f} "
            f"| {r['design_floor_to_floor']:.3f} |"
        )
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m bench` (`make bench`): every section in one run, one table, `bench/results.json`.

Sections: (1) CreateJob batches, (2) cold starts and the layer's size, (3) tracking cost,
(5) cancel to outcome, (4) local stack throughput for `--jobs` short jobs (1,000), and last
(6) connection limits, a burst of `--limit-requests` (300; the issue's 1,000 take about 10
minutes locally) on one connection capped at 20. Section 4 gets what is left of `--budget`
(500 s) and says so when that runs out first; section 6 runs after it, on its own clock
(about 4 minutes on 2 cores), so a whole run stays under 15 minutes. Each section runs
in a process of its own.

`--only NAME` (repeatable) runs those sections alone and puts their figures into `--output`
in place of the last run's, keeping the other sections' (each section says when it was
measured); `--section NAME --output FILE` runs one section in this process into FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import cancel, capacity, coldstart, createjob, limits, throughput, tracking
from bench.report import render, targets

RESULTS = Path(__file__).resolve().parent / "results.json"


SECTIONS = ("createjob", "tracking", "capacity", "coldstart", "cancel", "throughput", "limits")


def section(name: str, args: argparse.Namespace) -> dict[str, Any]:
    if name == "createjob":
        return createjob.run()
    if name == "tracking":
        return tracking.run()
    if name == "capacity":
        return capacity.run()
    if name == "coldstart":
        return coldstart.run(args.rounds)
    if name == "cancel":
        return cancel.run()
    if name == "limits":
        return limits.run(args.limit_requests)
    return throughput.run(args.jobs, args.budget)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000, help="short jobs for section 4")
    parser.add_argument("--budget", type=float, default=500.0, help="seconds for the whole run")
    parser.add_argument("--rounds", type=int, default=9, help="cold starts per handler")
    parser.add_argument(
        "--limit-requests",
        type=int,
        default=limits.DEFAULT_REQUESTS,
        help="requests of the burst in section 6 (the issue's figure is 1,000)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        metavar="SECTION",
        help=f"run this section alone (repeatable; one of {', '.join(SECTIONS)}); the other "
        "sections' figures in --output are kept",
    )
    parser.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.section:
        # One section per process: each local stack patches moto, boto3 and Powertools
        # caches in its process, and the cold starts need a moto server, not the mock.
        args.output.write_text(json.dumps(section(args.section, args), default=str))
        return 0

    started = time.perf_counter()
    results: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
    }
    names: tuple[str, ...] = SECTIONS
    if args.only:
        names = tuple(name for name in SECTIONS if name in args.only)
        if args.output.exists():
            # The last run's figures stay, its time and machine with them.
            results = json.loads(args.output.read_text())
    with tempfile.TemporaryDirectory(prefix="jobrelay-bench-") as scratch:
        for name in names:
            print(f"bench: {name}...", file=sys.stderr, flush=True)
            output = Path(scratch) / f"{name}.json"
            section_started = time.perf_counter()
            measured_at = datetime.now(UTC).isoformat(timespec="seconds")
            # Section 4 gets what is left of the budget, less its start and stop.
            left = args.budget - (section_started - started) - 25
            subprocess.run(  # noqa: S603 - this interpreter running this module
                [
                    sys.executable,
                    "-m",
                    "bench",
                    "--section",
                    name,
                    "--output",
                    str(output),
                    "--jobs",
                    str(args.jobs),
                    "--rounds",
                    str(args.rounds),
                    "--budget",
                    str(max(60.0, left)),
                    "--limit-requests",
                    str(args.limit_requests),
                ],
                check=True,
                # A section answers in its output file; what its handlers print (logs, EMF
                # lines from threads still finishing) is not the table's.
                stdout=subprocess.DEVNULL,
            )
            results[name] = json.loads(output.read_text())
            results[name]["measured_at"] = measured_at
            results[name]["bench_seconds"] = time.perf_counter() - section_started
    results["targets"] = targets(results)
    seconds = time.perf_counter() - started
    if not args.only:
        results["bench_seconds"] = seconds
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(render(results))
    ran = ", ".join(names) if args.only else "every section"
    print(f"\nresults: {args.output}  ({ran}: {seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

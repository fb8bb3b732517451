"""`python -m jobrelay_local.emulators`: start every provider's emulator until interrupted."""

from __future__ import annotations

import argparse
import json
import signal
import threading

from . import EMULATORS, start_all, stop_all
from .jobs import Behaviour
from .server import DEFAULT_API_KEY


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m jobrelay_local.emulators",
        description=f"Serve the {', '.join(EMULATORS)} emulators on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    for name in EMULATORS:
        parser.add_argument(f"--{name}-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--api-key", default=DEFAULT_API_KEY, help="key every emulator accepts ('' accepts any)"
    )
    parser.add_argument("--duration", type=float, default=Behaviour.duration, help="seconds")
    parser.add_argument("--queued", type=float, default=Behaviour.queued, help="seconds")
    parser.add_argument("--latency", type=float, default=Behaviour.latency, help="seconds")
    parser.add_argument("--json", action="store_true", help="print the URLs as one JSON line")
    args = parser.parse_args(argv)

    defaults = Behaviour(duration=args.duration, queued=args.queued, latency=args.latency)
    key = args.api_key or None
    emulators = start_all(
        dict.fromkeys(EMULATORS, key),
        host=args.host,
        ports={name: getattr(args, f"{name}_port") for name in EMULATORS},
        defaults=defaults,
    )
    urls = {name: emulator.url for name, emulator in emulators.items()}
    if args.json:
        print(json.dumps(urls), flush=True)
    else:
        for name, url in urls.items():
            print(f"{name:9} {url}   (admin: {url}/_admin/jobs)", flush=True)
    stopping = threading.Event()
    # A supervisor (the local stack, CI) stops us with SIGTERM; people press Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        stopping.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_all(emulators)


if __name__ == "__main__":
    main()

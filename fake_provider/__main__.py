"""python -m fake_provider --host 127.0.0.1 --port 0 --port-file /tmp/x.port [--api-key KEY] [--data-dir DIR]"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from .server import FakeOpenAI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fake_provider", description="Loopback fake of the OpenAI Files + Batches API")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = any free port (see --port-file)")
    ap.add_argument("--port-file", help="write the bound port here (atomically) once listening")
    ap.add_argument("--api-key", help="expected bearer key (default: $FAKE_OPENAI_API_KEY or sk-fake-test-key)")
    ap.add_argument("--data-dir", help="keep file bytes in this directory instead of memory")
    ap.add_argument("--advance", choices=["per-retrieve", "immediate", "timed"], default="per-retrieve")
    ap.add_argument("--step-seconds", type=float, default=1.0, help="seconds per status step in --advance timed")
    ap.add_argument("--max-requests", type=int, default=50_000, help="requests per batch before validation fails")
    ap.add_argument(
        "--validate",
        choices=["on-create", "on-first-poll"],
        default="on-create",
        help="when a created batch's input file (or an Anthropic create's body) is parsed: at create "
        "(default), or when the batch is first polled (benchmarks: keeps the fake's parsing off the "
        "client's upload and create)",
    )
    ap.add_argument("--config", help="JSON file with an initial control config (same shape as POST /_fake/config)")
    ap.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = ap.parse_args(argv)

    fake = FakeOpenAI(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        data_dir=args.data_dir,
        advance=args.advance,
        step_seconds=args.step_seconds,
        max_requests_per_batch=args.max_requests,
        verbose=args.verbose,
        validate=args.validate,
    )
    if args.config:
        with open(args.config) as f:
            cfg = json.load(f)
        fake.provider.set_boot_config(cfg)
    fake.bind()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    fake.start()
    if args.port_file:
        tmp = f"{args.port_file}.tmp.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(f"{fake.port}\n")
        os.replace(tmp, args.port_file)
    print(f"fake OpenAI listening on {fake.base_url}", file=sys.stderr, flush=True)
    while not stop.wait(0.5):
        pass
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

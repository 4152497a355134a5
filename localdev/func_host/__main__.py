"""The command line: `python -m localdev.func_host --root . --port 7071`, as `func start`
(local.settings.json `Values` exported, the keys printed, SIGTERM and Ctrl-C stop the host)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from localdev.func_host.config import (
    DEFAULT_FUNCTION_KEY,
    DEFAULT_MASTER_KEY,
    DEFAULT_STORAGE_SETTING,
    HostConfig,
)
from localdev.func_host.host import FunctionHost

LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%H:%M:%S"


def _load_local_settings(root: Path) -> None:
    """Export local.settings.json `Values` that the environment does not already set.

    Mirrors Core Tools, with the environment taking precedence so `make run` can override.
    """
    path = root / "local.settings.json"
    if not path.exists():
        return
    try:
        values = json.loads(path.read_text("utf-8-sig")).get("Values") or {}
    except ValueError as exc:
        raise SystemExit(f"{path}: invalid JSON: {exc}") from exc
    for key, value in values.items():
        os.environ.setdefault(str(key), str(value))


def main(argv: list[str] | None = None) -> int:
    """`python -m localdev.func_host --root . --host 127.0.0.1 --port 7071`."""
    parser = argparse.ArgumentParser(
        # Named for the command: argparse would otherwise call the program `__main__.py`.
        prog="python -m localdev.func_host",
        description="Local Azure Functions host (Python, v2 programming model: function_app.py)")
    parser.add_argument("--root", default=".", help="function app root (holds host.json)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071, help="0 picks a free port")
    parser.add_argument("--log-level", default=None,
                        help="DEBUG, INFO, ... (default: host.json logging.logLevel.default)")
    args = parser.parse_args(argv)

    root = Path(args.root).resolve()
    if not (root / "host.json").is_file():
        print(f"no host.json in {root}", file=sys.stderr)
        return 2
    _load_local_settings(root)
    level = (logging.getLevelName(args.log_level.upper()) if args.log_level
             else HostConfig.load(root).log_level)
    # Time to the millisecond, the level padded so messages line up; the app's own lines read on
    # their own (SMS_LOG_FORMAT=json turns every line, the host's too, into JSON).
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt=LOG_DATE_FORMAT)
    # The Azure SDK logs every HTTP call at INFO; the poller alone would flood the console.
    logging.getLogger("azure").setLevel(max(logging.WARNING, logging.getLogger().level))

    key = os.environ.get("LOCAL_FUNCTION_KEY") or DEFAULT_FUNCTION_KEY
    master = os.environ.get("LOCAL_MASTER_KEY") or DEFAULT_MASTER_KEY
    host = FunctionHost(
        root, host=args.host, port=args.port,
        storage_connection_string=os.environ.get(DEFAULT_STORAGE_SETTING),
        function_key=key, master_key=master,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        host.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"Function key: {key} (header x-functions-key or query ?code=; "
          f"set LOCAL_FUNCTION_KEY to change it)", flush=True)
    print(f"Master key: {master} (also the only key for authLevel admin; "
          f"set LOCAL_MASTER_KEY to change it)", flush=True)
    print(f"Host running at {host.base_url} (Ctrl-C to stop)", flush=True)
    while not stop.wait(0.5):
        pass
    print("Stopping the function host...", flush=True)
    if not host.stop():
        # Worker threads of a hung invocation would keep the interpreter alive at exit.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

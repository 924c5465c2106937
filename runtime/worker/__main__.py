"""``python -m runtime.worker --socket PATH [--port N] [--concurrency N]``: run one function host.

The process serves until SIGTERM/SIGINT. ``--concurrency`` defaults to ``$RUNTIME_CONCURRENCY`` or 1;
logs go to ``$RUNTIME_LOG_SOCKET`` (see ``runtime.worker.capture``).
"""

from __future__ import annotations

import argparse
import os

from runtime.worker.server import UnixListener, serve

CONCURRENCY_ENV = "RUNTIME_CONCURRENCY"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runtime.worker", description=__doc__)
    parser.add_argument("--socket", help="unix socket path to serve HTTP on")
    parser.add_argument("--port", type=int, help="also (or only) serve on 127.0.0.1:PORT")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=int(os.environ.get(CONCURRENCY_ENV) or 1),
        help=f"requests run at once (default ${CONCURRENCY_ENV} or 1)",
    )
    args = parser.parse_args(argv)
    if args.socket is None and args.port is None:
        parser.error("give --socket, --port, or both")
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    listener = UnixListener.bind(args.socket) if args.socket else None
    serve(listener=listener, port=args.port, concurrency=args.concurrency)


if __name__ == "__main__":
    main()

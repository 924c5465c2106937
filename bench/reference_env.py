"""The reference of ``bench/runtime.py``: our own minimal equivalent of Fission's Python environment
in its default serving mode, a Flask app served by bjoern (not the portal's code, not Fission's).

Fission's ``python/server.py`` (fission/environments) is a Flask app whose ``/v2/specialize``
loads the user's module and whose catch-all route calls the loaded function; unless
``WSGI_FRAMEWORK=GEVENT`` it serves with ``bjoern.run``, a single-threaded libev server. This file
keeps exactly that request path and leaves out what a hello-world call never reaches (websockets,
Sentry, the ``state.json`` that survives a restart, signal handlers), so that the benchmark compares
our runtime with the serving mode, not with its extras.

Runs in its own virtualenv, ``.build/bench-ref`` (``requirements-bench.txt``: Flask as Fission pins
it, and bjoern), made from the interpreter that the runtime's workers use by default:
``.build/bench-ref/bin/python bench/reference_env.py --port N``. It listens on 127.0.0.1 only.

``POST /v2/specialize`` takes ``{"filepath", "functionName"}`` as Fission's fetcher sends it:
``filepath`` is the function's file, or a directory holding ``<module>.py``; ``functionName`` is
``func`` (module ``main``) or ``module.func``, empty meaning ``main.main``. It answers 200 with an
empty body once the function is loaded. Every other path and method calls the function with no
arguments and returns what it returns (Flask makes the response), or 500 before specialization.
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bjoern
from flask import Flask, abort, request

app = Flask(__name__)
ANY_METHOD = ["GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE"]  # Fission's route list
userfunc: Callable[[], Any] | None = None


def load(filepath: Path, handler: str) -> Callable[[], Any]:
    """The function ``handler`` names, from a fresh import of its module's source file."""
    module_name, _, func_name = handler.rpartition(".")
    module_name, func_name = module_name or "main", func_name or "main"
    source = filepath / f"{module_name}.py" if filepath.is_dir() else filepath
    spec = importlib.util.spec_from_file_location(module_name, source)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {source}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function: Callable[[], Any] = getattr(module, func_name)
    return function


@app.post("/v2/specialize")
def specialize() -> str:
    global userfunc
    info = request.get_json()
    userfunc = load(Path(info["filepath"]), info.get("functionName") or "")
    return ""


@app.route("/", methods=ANY_METHOD)
@app.route("/<path:path>", methods=ANY_METHOD)
def call(path: str = "") -> Any:
    if userfunc is None:
        abort(500)
    return userfunc()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    bjoern.run(app, "127.0.0.1", args.port)


if __name__ == "__main__":
    main()

"""Benchmark of the portal and the runtime at scale: many tenants, functions and routes.

Not a test (issue 19). Two parts, each in its own module and each measuring its targets against
a reference taken in the same run, interleaved in rounds where a timing is compared:

- ``bench/scale_portal.py``: tenant creation (schema and provisioning to ready) over 50 tenants;
  a no-op ``migrate_schemas`` at 200 and 1,000 tenants; the REST API's function list (first page)
  with 1,000 functions in a tenant.
- ``bench/scale_runtime.py``: router throughput at 32 connections with 10 and with 10,000 HTTP
  triggers; a restart restoring 10,000 functions; what an idle (scaled to zero) function costs the
  runtime; the PSS of a warm worker over 100 forked from the zygote.

Run with ``make bench`` (or ``.venv/bin/python bench/scale.py``; ``--help`` lists the size flags;
``--only portal|runtime``). Prints a table, then one JSON object as the last line, holding both
parts' keys, CPU steal over the whole run (``steal_cores``, from /proc/stat) and ``targets``
(key -> passed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import scale_portal, scale_runtime
from bench.runtime import cpu_times, steal_since

KEYS = (
    "tenant_create_p50_s", "tenant_create_p99_s", "migrate_noop_s_200", "migrate_noop_s_1000",
    "router_rps_10_routes", "router_rps_10000_routes", "restore_10000_s", "idle_function_kib",
    "warm_worker_pss_kib", "api_list_p50_ms_1000_functions",
)  # fmt: skip


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0], conflict_handler="resolve")
    scale_portal.add_arguments(result)
    scale_runtime.add_arguments(result)  # both parts take --rounds (3): one flag sets both
    result.add_argument("--only", choices=("portal", "runtime"), help="run one part only")
    return result


def main() -> None:
    args = parser().parse_args()
    if args.only != "portal" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk (make bench does it)")
    before = cpu_times()
    started = time.monotonic()
    parts: dict[str, dict[str, Any]] = {}
    if args.only != "runtime":
        parts["portal"] = scale_portal.run(args)
    if args.only != "portal":
        parts["runtime"] = scale_runtime.run(args)
    steal = steal_since(before)
    result: dict[str, Any] = {"bench": "scale"}
    targets: dict[str, bool] = {}
    for name, part in parts.items():
        targets.update(part.get("targets", {}))
        result.update({k: v for k, v in part.items() if k not in ("bench", "targets", "steal_cores")})
        result[f"steal_cores_{name}"] = part.get("steal_cores")
    result.update(steal_cores=round(steal, 2), seconds=round(time.monotonic() - started), targets=targets)
    for name, module in (("portal", scale_portal), ("runtime", scale_runtime)):
        if name in parts:
            print(f"-- {name}")
            for label, value, target in module.rows(parts[name]):
                print(f"{label:<46}{value!s:<52}{target}")
    missing = [key for key in KEYS if key not in result]
    if missing:  # a part left out, or sizes other than the defaults
        print(f"not measured in this run: {', '.join(missing)}")
    print(f"CPU steal {result['steal_cores']} cores over {result['seconds']} s; targets: "
          f"{sum(targets.values())} of {len(targets)} pass")  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()

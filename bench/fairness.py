"""How the local runtime shares the CPU between tenants (a benchmark, not a test).

Two tenants on one sandboxed runtime, each with a function that spins for ``SPIN`` seconds of
wall time and answers the CPU time it got meanwhile. In each round, at the same moment, tenant
``acme`` calls it ``BUSY_A`` times at once (that many busy workers) and ``globex`` once. With each
tenant a CPU group of equal weight (``runtime/sandbox/cgroups.py``) the two tenants get about the
same CPU, whatever their worker counts; with a group per worker (or per process), ``acme`` gets
``BUSY_A`` times ``globex``'s share. The machine has two CPUs here, so the five spinning processes
contend (the runtime barely runs meanwhile).

Target, within each round: ``globex`` (one busy worker) gets >= 0.8x the CPU of ``acme`` (three)
(``one_vs_many``, the median of the round ratios, with its range). CPU steal during the run is
reported. About a minute.

``.venv/bin/python bench/fairness.py [--rounds N]``
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.runtime import cpu_times, steal_since
from testsupport.fission import environment, function, httptrigger, package_literal
from testsupport.runtime import RuntimeProcess

SPIN = 3.0
BUSY_A = 3
TENANTS = {"faas-acme": "/acme", "faas-globex": "/globex"}
SPINNER = f"""import time
def main():
    began, cpu = time.time(), time.process_time()
    while time.time() - began < {SPIN}:
        pass
    return str(time.process_time() - cpu)
"""
TARGET = 0.8


def deploy(runtime: RuntimeProcess) -> None:
    for namespace, root in TENANTS.items():
        for obj in (
            environment(namespace, "python", poolsize=BUSY_A + 1),
            package_literal(namespace, "spin-pkg", SPINNER),
            function(namespace, "spin", package="spin-pkg", max_scale=BUSY_A + 1),
            httptrigger(namespace, "spin", f"{root}/spin"),
        ):
            response = runtime.apply(obj)
            if response.status_code not in (200, 201):
                raise SystemExit(f"could not apply {obj['kind']}: {response.text}")


def spin_all(runtime: RuntimeProcess, paths: list[str]) -> list[float]:
    """Call every path at once; the CPU seconds each call got, in order."""
    with concurrent.futures.ThreadPoolExecutor(len(paths)) as pool:
        answers = list(pool.map(lambda path: runtime.call(path, timeout=60), paths))
    for answer in answers:
        if answer.status_code != 200:
            raise SystemExit(f"a call failed: {answer.status_code} {answer.text}")
    return [float(answer.text) for answer in answers]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    began = time.monotonic()
    before = cpu_times()
    rounds: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-fairness-") as tmp:
        runtime = RuntimeProcess(state_dir=Path(tmp) / "runtime", own_session=True).start()
        try:
            deploy(runtime)
            paths = [f"{TENANTS['faas-acme']}/spin"] * BUSY_A + [f"{TENANTS['faas-globex']}/spin"]
            spin_all(runtime, paths)  # every worker specialized: the rounds measure warm calls
            for index in range(args.rounds):
                got = spin_all(runtime, paths)
                rounds.append((sum(got[:BUSY_A]), got[BUSY_A]))
                print(
                    f"round {index + 1}/{args.rounds}: acme {got[:BUSY_A]}, globex {got[BUSY_A]}",
                    file=sys.stderr,
                )
        finally:
            runtime.stop()
    steal = steal_since(before)
    ratios = [one / many for many, one in rounds]
    result = {
        "bench": "fairness",
        "acme_cpu_s": round(statistics.median(many for many, _ in rounds), 2),
        "globex_cpu_s": round(statistics.median(one for _, one in rounds), 2),
        "one_vs_many": round(statistics.median(ratios), 3),
        "one_vs_many_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "targets": {"one_vs_many_ge_0.8": statistics.median(ratios) >= TARGET},
        "rounds": args.rounds,
        "spin_s": SPIN,
        "steal_cores": round(steal, 2),
        "seconds": round(time.monotonic() - began),
    }
    verdict = "PASS" if result["targets"]["one_vs_many_ge_0.8"] else "FAIL"
    print(f"{'tenant':10}{'busy workers':>14}{'CPU s (median)':>16}")
    print(f"{'acme':10}{BUSY_A:>14}{result['acme_cpu_s']:>16}")
    print(f"{'globex':10}{1:>14}{result['globex_cpu_s']:>16}")
    print(
        f"globex / acme: {result['one_vs_many']}x {result['one_vs_many_range']} (>= {TARGET}x: {verdict});"
        f" {SPIN} s of spinning a round, {args.rounds} rounds, CPU steal {result['steal_cores']} cores"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()

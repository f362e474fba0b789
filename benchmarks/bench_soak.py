"""Soak: many mixed solves in one process, as a long-running orchestrator makes them.

Cycles over small scenarios (multi-slot, single-slot, a binding budget, the whole model, an
infeasible one that is explained) x backends (highs, pulp, pyomo) x threads (1, 2, default), checks
every plan with the independent checker, and reports, per block of solves, the resident memory and
the number of OS threads of the process: growth between the first and last blocks is a leak.

    python benchmarks/bench_soak.py --solves 1000 [--out benchmarks/out/soak.json]

Reported figures are ratios within one run (memory growth relative to the first block, time per
solve of the last block relative to the first), so a noisy machine does not change them much.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_soak import CASES  # noqa: E402  (the same instances as the soak test)

import planner  # noqa: E402


def rss_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--solves", type=int, default=1000)
    ap.add_argument("--block", type=int, default=100)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    scs = {name: planner.scenario_from_dict(make()) for name, (make, _) in CASES.items()}
    combos = list(itertools.product(CASES, ("highs", "pulp", "pyomo"), (1, 2, None)))
    blocks = []
    t_block = time.perf_counter()
    failures = 0
    for i in range(a.solves):
        name, backend, threads = combos[i % len(combos)]
        sc, kw = scs[name], CASES[name][1]
        try:
            plan = planner.solve(sc, "carbon", backend, threads=threads, mip_gap=0.0, **kw)
            if not planner.check(plan, sc).ok:
                failures += 1
        except planner.InfeasibleError:
            if name != "infeasible":
                failures += 1
        if (i + 1) % a.block == 0:
            gc.collect()
            now = time.perf_counter()
            blocks.append({"solves": i + 1, "rss_mib": round(rss_mib(), 1), "os_threads": os_threads(),
                           "python_threads": threading.active_count(),
                           "seconds_per_solve": round((now - t_block) / a.block, 4)})
            t_block = now
            print(json.dumps(blocks[-1]), flush=True)
    first, last = blocks[0], blocks[-1]
    summary = {
        "solves": a.solves, "failures": failures,
        "rss_first_block_mib": first["rss_mib"], "rss_last_block_mib": last["rss_mib"],
        "rss_growth_ratio": round(last["rss_mib"] / first["rss_mib"], 3),
        "os_threads_first_last": [first["os_threads"], last["os_threads"]],
        "time_per_solve_ratio_last_first": round(last["seconds_per_solve"] / first["seconds_per_solve"], 3),
        "blocks": blocks,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "blocks"}, indent=1))
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(summary, indent=1) + "\n")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

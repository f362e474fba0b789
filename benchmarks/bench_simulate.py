"""Simulator speed benchmark (not a test): how many requests per second ``plan simulate`` sustains.

Target (issue 4): at least one million requests simulated in under 60 s on one core.

Two measurements, each in its own process pinned to one CPU where the OS allows it:

* ``engine``: ``planner.sim.engine.run`` alone on N Poisson requests (409 prompt / 94 output tokens)
  spread over 40 replicas of llama-3.1-8b on H100-80GB at 80 % of their profiled rate;
* ``plan``: the whole ``planner.sim`` (arrivals, routing, engine, statistics, report) on the
  default scenario's carbon plan for one whole slot (about 1.1 million requests at the planned
  load), solved first unless ``--plan`` gives one.

Each row gives requests, wall seconds, requests per second, peak RSS and ``wall / 60 s`` for one
million requests (the target is met when it is below 1). Figures of one run are comparable with each
other; absolute seconds vary between machines.

    python benchmarks/bench_simulate.py
    python benchmarks/bench_simulate.py --requests 2000000 --plan plan.json --slot 14
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

RUN_ENGINE = r"""
import json, resource, sys, time
import numpy as np
from planner.perf.model import MAX_NUM_SEQS, replica_model
from planner.sim.engine import DeploymentSpec, run
n = int(sys.argv[1])
rm = replica_model("llama-3.1-8b", "H100-80GB", 1, 1, None)
cap = rm.capacity(409, 94, 1000, 100)
reps = 40
d = DeploymentSpec(rm, reps, cap.chunk_tokens, MAX_NUM_SEQS, int(rm.kv_budget_bytes // rm.kv_bytes_per_token))
rng = np.random.default_rng(0)
t = np.cumsum(rng.exponential(1000.0 / (cap.max_rps * reps * 0.8), n))
t0 = time.perf_counter()
res = run([d], t, np.full(n, 409), np.full(n, 94), np.zeros(n, dtype=np.int64), t, seed=1)
wall = time.perf_counter() - t0
assert np.isfinite(res.finish_ms).all()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"requests": n, "wall": wall, "events": res.events, "rss_mib": rss}))
"""

RUN_PLAN = r"""
import json, resource, sys, time
import planner
from planner.sim import simulate
sc = planner.load_scenario(None)
t0 = time.perf_counter()
rep = simulate(sys.argv[1], sc, slots=sys.argv[2], policy=sys.argv[3])
wall = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"requests": rep.requests.arrived, "wall": wall, "events": rep.timing.events, "rss_mib": rss,
                  "engine": rep.timing.engine_seconds}))
"""


def _one_core() -> list[str]:
    return ["taskset", "-c", "0"] if sys.platform.startswith("linux") and _has("taskset") else []


def _has(cmd: str) -> bool:
    return any((Path(p) / cmd).exists() for p in os.environ.get("PATH", "").split(os.pathsep))


def _run(code: str, *args: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([*_one_core(), sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1_000_000, help="requests for the engine measurement")
    ap.add_argument("--plan", help="a plan of the default scenario (default: solve the carbon plan first)")
    ap.add_argument("--slot", default="14", help="slot of the plan to simulate (whole slot)")
    ap.add_argument("--policy", default="llf")
    ap.add_argument("--markdown", help="also write the table here")
    a = ap.parse_args()
    rows = []
    r = _run(RUN_ENGINE, str(a.requests))
    rows.append(("engine", r))
    plan = a.plan
    if plan is None:
        tmp = Path(tempfile.mkdtemp()) / "plan.json"
        subprocess.run([sys.executable, "-m", "planner.cli", "solve", "--objective", "carbon", "-q", "-o", str(tmp)],
                       check=True)
        plan = str(tmp)
    r = _run(RUN_PLAN, plan, a.slot, a.policy)
    rows.append((f"plan (default carbon, slot {a.slot}, {a.policy})", r))
    lines = ["| measurement | requests | wall s | requests/s | peak MiB | wall for 1M / 60 s |",
             "|---|---|---|---|---|---|"]
    for name, r in rows:
        rate = r["requests"] / r["wall"]
        lines.append(f"| {name} | {r['requests']:,} | {r['wall']:.1f} | {rate:,.0f} | {r['rss_mib']:.0f} | "
                     f"{1e6 / rate / 60:.2f} |")
    text = "\n".join(lines)
    print(text)
    if a.markdown:
        Path(a.markdown).write_text(text + "\n")


if __name__ == "__main__":
    main()

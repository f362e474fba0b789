"""Scaling benchmark (not a test): `plan generate` at growing sizes, then per backend the whole
`plan solve` run (build, solve, plan extraction) against HiGHS alone solving the model that run wrote.

Every figure of one row comes from the same run on the same machine, so the ratios are comparable
even on a noisy machine; absolute seconds are not. Each measurement runs in its own process; peak
memory is that process's maximum RSS including its worker processes.

    python benchmarks/bench_scaling.py                       # default sizes, all backends
    python benchmarks/bench_scaling.py --sizes 16x24x4x2x4 --backends highs --time-limit 60
    python benchmarks/bench_scaling.py --markdown out.md     # also write the table

Columns: size R x T x G x M x K (regions, slots, GPU types, models, classes); vars/ints/rows of the
whole model; backend; build s, solve s (as the plan reports them), wall s of the whole CLI run, peak
MiB; `highs-alone s`: `highspy` reading the written MPS and solving it with the same gap, threads
and time limit (one model, all slots); `ratio`: wall / highs-alone; the gap each reached.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

RUN_PLAN = r"""
import json, resource, sys, time
from planner.cli import main
t0 = time.perf_counter()
code = main(sys.argv[1:])
wall = time.perf_counter() - t0
rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(json.dumps({"code": code, "wall": wall, "rss_mib": rss / 1024}))
"""

RUN_HIGHS = r"""
import json, resource, sys, time
import highspy
path, gap, threads, limit = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
t0 = time.perf_counter()
h = highspy.Highs()
h.setOptionValue("output_flag", False)
h.readModel(path)
h.setOptionValue("mip_rel_gap", gap)
h.setOptionValue("threads", threads)
if limit > 0:
    h.setOptionValue("time_limit", limit)
h.run()
wall = time.perf_counter() - t0
info = h.getInfo()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"wall": wall, "status": h.modelStatusToString(h.getModelStatus()),
                  "objective": info.objective_function_value, "gap": info.mip_gap, "rss_mib": rss / 1024}))
"""


def _run(code: str, args: list[str], timeout: float) -> dict:
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in p.stdout.strip().splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"measurement failed: {p.stderr[-2000:]}")
    return json.loads(lines[-1])


def parse_size(s: str) -> tuple[int, ...]:
    parts = tuple(int(x) for x in s.lower().split("x"))
    if len(parts) != 5:
        raise argparse.ArgumentTypeError("size is RxTxGxMxK, e.g. 16x24x4x2x4")
    return parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=parse_size,
                    default=[parse_size(s) for s in ("4x24x3x2x4", "8x24x4x2x4", "16x24x4x2x4", "24x24x4x2x4")])
    ap.add_argument("--backends", nargs="+", default=["highs", "pyomo", "pulp"])
    ap.add_argument("--objective", default="carbon")
    ap.add_argument("--mip-gap", type=float, default=5e-3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--time-limit", type=float, default=300.0)
    ap.add_argument("--whole-model", action="store_true", help="solve all slots as one model in the planner too")
    ap.add_argument("--skip-highs-alone", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for size in args.sizes:
            R, T, G, M, K = size
            sdir = tmp / f"s{R}x{T}x{G}x{M}x{K}"
            from planner.scenario.generate import generate_scenario

            generate_scenario(sdir, regions=R, slots=T, gpus=G, models=M, classes=K, seed=args.seed)
            for be in args.backends:
                model = tmp / f"{sdir.name}-{be}.mps"
                plan = tmp / f"{sdir.name}-{be}.json"
                cli = ["solve", str(sdir), "--objective", args.objective, "--backend", be, "--mip-gap",
                       str(args.mip_gap), "--threads", str(args.threads), "--time-limit", str(args.time_limit),
                       "--write-model", str(model), "-q", "-o", str(plan)]
                if args.whole_model:
                    cli.append("--whole-model")
                m = _run(RUN_PLAN, cli, timeout=args.time_limit * 4 + 600)
                row = {"size": "x".join(map(str, size)), "backend": be, "wall": m["wall"], "rss_mib": m["rss_mib"],
                       "code": m["code"]}
                if m["code"] == 0:
                    p = json.loads(plan.read_text())
                    s = p["solver"]
                    row.update(vars=s["variables"], ints=s["integer_variables"], rows=s["constraints"],
                               build=s["build_seconds"], solve=s["solve_seconds"], gap=s["gap"],
                               objective=p["objective"]["value"], by_slot=s["slots_solved_separately"])
                if not args.skip_highs_alone and model.exists() and be == args.backends[0]:
                    h = _run(RUN_HIGHS, [str(model), str(args.mip_gap), str(args.threads), str(args.time_limit)],
                             timeout=args.time_limit * 2 + 600)
                    row.update(highs_alone=h["wall"], highs_alone_status=h["status"], highs_alone_gap=h["gap"],
                               ratio=m["wall"] / h["wall"])
                rows.append(row)
                print(json.dumps(row), flush=True)
    table = render(rows, args)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")


def render(rows: list[dict], args) -> str:
    def f(v, d=1):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.{d}f}" if abs(v) >= 0.01 or v == 0 else f"{v:.1e}"
        return str(v)

    head = (f"objective {args.objective}, mip gap {args.mip_gap}, {args.threads} threads, time limit "
            f"{args.time_limit:g} s, {'whole model' if args.whole_model else 'slot by slot when possible'}")
    lines = [head, "",
             "| size RxTxGxMxK | vars | ints | rows | backend | build s | solve s | wall s | peak MiB | gap | "
             "HiGHS alone s | HiGHS alone gap | wall / HiGHS alone |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r.get('vars', '-')} | {r.get('ints', '-')} | {r.get('rows', '-')} | {r['backend']} | "
            f"{f(r.get('build'), 2)} | {f(r.get('solve'))} | {f(r['wall'])} | {f(r['rss_mib'], 0)} | "
            f"{f(r.get('gap'), 4)} | {f(r.get('highs_alone'))} | {f(r.get('highs_alone_gap'), 4)} | "
            f"{f(r.get('ratio'), 2)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

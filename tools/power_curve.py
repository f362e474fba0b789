#!/usr/bin/env python3
"""Replica power at partial load: the performance model's curve against the planner's lines.

Usage::

    python3 tools/power_curve.py

Under continuous batching a replica at load ``x < max_rps`` runs a smaller batch ``B`` back to back:
its power is ``power_w(1, busy_power_parts(B, in, out))`` at the rate ``B / (out · tbt(B))``. Below
the rate of one sequence it idles part of the time (linear from idle to the one-sequence power).
The planner draws a straight line from a zero-load intercept to ``busy_power_w`` at ``max_rps``:
``active_power_w`` (the power of one sequence run continuously) or, without it, ``idle_power_w``.

Prints (1) the curve and both lines for two example replicas (8B on one H100, 70B on four A100s,
conv-short 409/94 tokens, TBT target 100 ms) and (2) for every row of ``data/default/profiles.csv``,
the relative error of each line against the curve at utilisation 0.3, 0.5, 0.8 and 1, grouped by
rows whose capacity is a single sequence, rows whose ``active_power_w`` is capped at busy power
(power falling with load, below max clock) and the others. docs/performance-model.md quotes it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.perf import model as pm
from planner.scenario.loading import load_scenario


def curve(rm, inp, out, max_rps):
    """(utilisation, power) at batches 1..the largest whose rate is within max_rps."""
    b = np.arange(1, pm.MAX_NUM_SEQS + 1)
    rate = np.array([x / (out * rm.tbt_ms(x, inp, out)) * 1e3 for x in b])
    power = np.array([rm.power_w(1.0, rm.busy_power_parts(x, inp, out)) for x in b])
    keep = rate <= max_rps * (1 + 1e-3)  # max_rps of a row is rounded down to 4 digits
    return rate[keep] / max_rps, power[keep]


def power_at(u_pts, p_pts, idle, u):
    if u < u_pts[0]:  # part-time: one sequence, or idle
        return idle + (p_pts[0] - idle) * u / u_pts[0]
    return float(np.interp(u, u_pts, p_pts))


def examples() -> None:
    for model, gpu, tp, ttft in (("llama-3.1-8b", "H100-80GB", 1, 1000), ("llama-3.1-70b", "A100-80GB", 4, 1500)):
        rm, (inp, out) = pm.replica_model(model, gpu, tp), (409, 94)
        cap = rm.capacity(inp, out, ttft, 100)
        act, idle, busy = rm.active_power_w(inp, out), rm.idle_power_w, cap.busy_power_w
        print(f"{model} on {tp} x {gpu}, TTFT {ttft} / TBT 100 ms: idle {idle:.0f} W, active {act:.0f} W, "
              f"busy {busy:.0f} W at {cap.max_rps:.1f} req/s (batch {cap.batch})")
        print("  batch  util  model W  active line  idle line")
        for b in (1, 8, 16, 32, 64, 128, 256):
            if b <= cap.batch:
                u = b / (out * rm.tbt_ms(b, inp, out)) * 1e3 / cap.max_rps
                p = rm.power_w(1.0, rm.busy_power_parts(b, inp, out))
                print(f"  {b:5d}  {u:4.2f}  {p:7.0f}  {act + (busy - act) * u:11.0f}  {idle + (busy - idle) * u:9.0f}")


def default_rows() -> None:
    sc = load_scenario(None)
    tokens = {s.name: (s.input_tokens, s.output_tokens) for s in sc.spec.shapes}
    rows = []
    for r in sc.profiles.itertuples():
        rm = pm.replica_model(r.model, r.gpu, int(r.tp), int(r.pp), float(r.freq_mhz))
        inp, out = tokens[r.shape]
        u_pts, p_pts = curve(rm, inp, out, r.max_rps)
        if len(u_pts) == 1:
            group = "capacity of one sequence"
        elif r.active_power_w < rm.active_power_w(inp, out) - 0.1:
            group = "active capped at busy"
        else:
            group = "other"
        for u in (0.3, 0.5, 0.8, 1.0):
            true = power_at(u_pts, p_pts, r.idle_power_w, u)
            rows.append((group, u, (r.active_power_w + (r.busy_power_w - r.active_power_w) * u) / true - 1,
                         (r.idle_power_w + (r.busy_power_w - r.idle_power_w) * u) / true - 1))
    df = pd.DataFrame(rows, columns=["rows", "util", "active line", "idle line"])
    n = df[df["util"] == 1.0].groupby("rows").size()
    print(f"\ndata/default/profiles.csv ({len(sc.profiles)} rows: " + ", ".join(f"{k} {v}" for k, v in n.items())
          + "): error of each line against the model's curve, min / median / max")
    pd.set_option("display.width", 200)
    agg = df.groupby(["rows", "util"])[["active line", "idle line"]].agg(["min", "median", "max"])
    print((agg * 100).round(1).to_string())


if __name__ == "__main__":
    examples()
    default_rows()

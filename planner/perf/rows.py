"""Profile table rows from the performance model: one per fitting (tp, pp) x clock x shape.

Without a stated statistic a row is :meth:`planner.perf.model.ReplicaModel.capacity`'s for the shape's
representative pair (``mean``); with one it is :func:`planner.perf.queueing.capacity`'s for the shape's
length distribution at that percentile (docs/performance-model.md).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from planner.errors import InputError
from planner.perf import queueing
from planner.perf.model import (LATENCY_QUANTUM_MS, PP_SET, TP_SET, _floor_sig, _round_latency, configs_for,
                                expected_error, gpu_spec, model_spec, replica_model)

PROFILE_ROW_COLUMNS = ["model", "gpu", "tp", "pp", "freq_mhz", "shape", "max_rps", "ttft_ms", "tbt_ms",
                       "busy_power_w", "idle_power_w", "active_power_w", "source", "expected_error", "statistic",
                       "service_ms"]


def service_ms(rm, mix: "queueing.LengthMix") -> float:
    """Mean time one request of ``mix`` spends on an otherwise idle replica: its prefill plus
    ``output - 1`` decode steps at batch 1 (context: prompt plus half the output), averaged over the mix."""
    pre = np.array([rm.prefill_ms(float(i)) for i in mix.inp])
    dec = np.array([rm.decode_step_ms(1.0, float(i) + float(o) / 2.0) for i, o in zip(mix.inp, mix.out)])
    return float(mix.w @ (pre + (mix.out - 1.0) * dec))


def profile_rows(model: str, gpu: str, shapes: dict[str, tuple[float, float]],
                 slo_per_shape: dict[str, tuple],
                 tps=TP_SET, pps=PP_SET, freqs=None, distributions: dict | None = None) -> pd.DataFrame:
    """Profile table rows (``planner.scenario.loading.PROFILE_COLUMNS``) for one model on one GPU type:
    every fitting (tp, pp) × clock × shape with an SLO-meeting operating point.

    ``shapes``: name -> (input_tokens, output_tokens); ``slo_per_shape``: name -> (ttft_ms, tbt_ms,
    e2e_ms or None[, statistic or None[, attainment or None]]), the targets the row's ``max_rps`` is
    computed for (every shape in ``shapes`` needs one). Rows with no operating point meeting the
    targets are omitted. Deterministic: sorted by (tp, pp, freq_mhz, shape).

    Without a statistic the row is :meth:`ReplicaModel.capacity`'s for the representative pair
    (``statistic`` ``mean``: ``tbt_ms`` the steady-state mean TBT, ``ttft_ms`` the TTFT with its
    queueing allowance). With one (``p99``, ...), it is :func:`planner.perf.queueing.best_operating`'s
    for the shape's length distribution (``distributions[shape]``, a frame of input_tokens,
    output_tokens, weight; the representative pair without one) at that statistic and attainment:
    ``max_rps`` the largest rate meeting the targets at that percentile, ``ttft_ms``/``tbt_ms`` the
    predicted percentiles there. Rounding never breaks a target: TTFT and TBT are rounded *up* to
    ``LATENCY_QUANTUM_MS`` (never above a target the model says they meet) and the targets (e2e as
    ``ttft + (output − 1) × tbt``) are checked on the rounded values, lowering the operating point if
    needed; ``max_rps`` is rounded *down* to ``MAX_RPS_DIGITS`` significant digits. Powers are rounded
    to 0.1 W; ``active_power_w`` is :meth:`ReplicaModel.active_power_w` of the shape (of its mean
    lengths with a distribution), capped at ``busy_power_w`` (rows where the model's power falls with
    load, below max clock). ``expected_error`` is the median relative error of ``max_rps`` (with a
    statistic, combined in quadrature with the queueing model's held-out error); ``source`` is
    :func:`source_label`. ``service_ms`` is :func:`service_ms` of the shape (its distribution's mean).
    """
    m, g = model_spec(model), gpu_spec(gpu)
    missing = sorted(set(shapes) - set(slo_per_shape))
    if missing:
        raise InputError(f"no SLO given for shape(s) {', '.join(missing)}")
    if not shapes:
        return pd.DataFrame(columns=PROFILE_ROW_COLUMNS)
    distributions = distributions or {}
    mixes = {s: (queueing.LengthMix.from_table(distributions[s]) if distributions.get(s) is not None
                 else queueing.LengthMix.point(*shapes[s])) for s in shapes}
    longest = max(int(i + o) for i, o in shapes.values())
    levels = g.freq_levels() if freqs is None else [int(f) for f in freqs]
    rows = []
    for tp, pp in configs_for(m.name, g.name, longest, tps, pps):
        for f in sorted(levels):
            rm = replica_model(m.name, g.name, tp, pp, float(f))
            err = expected_error(rm)
            for shape in sorted(shapes):
                inp, out = shapes[shape]
                slo = tuple(slo_per_shape[shape]) + (None, None)
                ttft, tbt, e2e, stat, att = slo[:5]
                if stat is None:
                    cap = rm.capacity(inp, out, ttft, tbt, e2e, latency_quantum_ms=LATENCY_QUANTUM_MS)
                    if cap is None:
                        continue
                    row_ttft, row_tbt = _round_latency(cap.ttft_ms), _round_latency(cap.tbt_ms)
                    row_err, active_io = err, (inp, out)
                else:
                    cap = queueing.capacity(rm, mixes[shape],
                                            queueing.Targets(ttft, tbt, e2e, stat, att))
                    if cap is None:
                        continue
                    row_ttft = min(_round_latency(cap.ttft_ms), float(ttft))
                    row_tbt = min(_round_latency(cap.tbt_ms), float(tbt))
                    row_err = math.hypot(err, queueing.model_error())
                    active_io = (mixes[shape].mean_input, mixes[shape].mean_output)
                # capped at busy power: below max clock, compute-bound work draws less than the
                # memory-bound weight reads, so power can fall with load (docs/performance-model.md)
                active = min(rm.active_power_w(*active_io), cap.busy_power_w)
                rows.append(dict(model=m.name, gpu=g.name, tp=tp, pp=pp, freq_mhz=int(f), shape=shape,
                                 max_rps=_floor_sig(cap.max_rps), ttft_ms=row_ttft,
                                 tbt_ms=row_tbt, busy_power_w=round(cap.busy_power_w, 1),
                                 idle_power_w=round(cap.idle_power_w, 1), active_power_w=round(active, 1),
                                 source=rm.source, expected_error=round(row_err, 3), statistic=stat or "mean",
                                 service_ms=round(service_ms(rm, mixes[shape]), 1)))
    return pd.DataFrame(rows, columns=PROFILE_ROW_COLUMNS)

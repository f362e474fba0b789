"""The largest request rate one replica sustains *in simulation* for a length distribution and targets.

Vidur-style: the discrete-event engine (:mod:`planner.sim.engine`) runs Poisson arrivals whose
lengths are drawn from a :class:`planner.perf.queueing.LengthMix`, and a bisection on the rate
finds the largest one whose simulated requests meet the targets at the requested statistic. Common
random numbers (one arrival stream of unit rate, rescaled; the same lengths) make the check
monotone in the rate up to the engine's own discreteness. Used to calibrate and test the analytic
queueing model (``tools/calibrate_queueing.py``, tests/test_queueing.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.perf.model import MAX_NUM_SEQS, ReplicaModel
from planner.perf.queueing import LengthMix, Targets
from planner.scenario.schema import statistic_level
from planner.sim import engine as simengine


@dataclass(frozen=True)
class SimOutcome:
    """Simulated fractions (over requests after the warm-up) and latencies at one rate."""

    rate_rps: float
    requests: int
    attainment: float
    ttft_ok: float
    tbt_ok: float
    e2e_ok: float
    ttft_ms: np.ndarray
    tbt_ms: np.ndarray
    e2e_ms: np.ndarray

    def meets(self, t: Targets) -> bool:
        lvl = statistic_level(t.statistic)
        if lvl is None:
            ok = (np.nanmean(self.ttft_ms) <= t.ttft_ms and np.nanmean(self.tbt_ms) <= t.tbt_ms
                  and (t.e2e_ms is None or np.nanmean(self.e2e_ms) <= t.e2e_ms)
                  and np.isfinite(self.ttft_ms).all())
        else:
            ok = self.ttft_ok >= lvl and self.tbt_ok >= lvl and self.e2e_ok >= lvl
        return bool(ok and (t.attainment is None or self.attainment >= t.attainment))


class ReplicaSim:
    """One replica under Poisson arrivals of ``requests`` lengths drawn from ``mix`` (seeded)."""

    def __init__(self, rm: ReplicaModel, mix: LengthMix, chunk: int, requests: int = 20000, seed: int = 0,
                 warmup: float = 0.1):
        rng = np.random.default_rng(seed)
        self.rm, self.chunk = rm, int(chunk)
        self.unit_t = np.cumsum(rng.exponential(1.0, requests))    # arrivals of a unit-rate process (s)
        idx = rng.choice(len(mix.w), requests, p=mix.w)
        self.inp, self.out = mix.inp[idx], mix.out[idx]
        self.warm = np.arange(requests) >= int(warmup * requests)
        self.spec = simengine.DeploymentSpec(rm, 1, self.chunk, MAX_NUM_SEQS, int(rm.kv_tokens))
        self.seed = seed

    def at(self, rate_rps: float, t: Targets) -> SimOutcome:
        n = len(self.unit_t)
        t_ms = self.unit_t / rate_rps * 1e3
        res = simengine.run([self.spec], t_ms, self.inp, self.out, np.zeros(n, np.int64),
                            np.arange(n, dtype=float), self.seed)
        w = self.warm
        ttft = (res.first_ms - t_ms)[w]
        e2e = (res.finish_ms - t_ms)[w]
        out = self.out[w]
        tbt = np.where(out > 1, (res.finish_ms[w] - res.first_ms[w]) / np.maximum(out - 1, 1), np.nan)
        ran = np.isfinite(ttft)
        m_ttft = ran & (ttft <= t.ttft_ms + 1e-9)
        m_tbt = ran & ((out <= 1) | (tbt <= t.tbt_ms + 1e-9))
        m_e2e = ran & (True if t.e2e_ms is None else (e2e <= t.e2e_ms + 1e-9))
        return SimOutcome(rate_rps, int(w.sum()), float((m_ttft & m_tbt & m_e2e).mean()), float(m_ttft.mean()),
                          float(m_tbt.mean()), float(m_e2e.mean()), np.where(ran, ttft, np.inf),
                          tbt, np.where(ran, e2e, np.inf))

    def max_rate(self, t: Targets, hi_rps: float, rel_tol: float = 0.005) -> float:
        """Largest rate in ``(0, hi_rps]`` whose simulation meets ``t`` (0 if even a trickle misses)."""
        lo, hi = 0.0, float(hi_rps)
        if self.at(hi, t).meets(t):
            return hi
        if not self.at(hi * 1e-3, t).meets(t):
            return 0.0
        lo = hi * 1e-3
        while hi - lo > rel_tol * hi:
            mid = 0.5 * (lo + hi)
            if self.at(mid, t).meets(t):
                lo = mid
            else:
                hi = mid
        return lo

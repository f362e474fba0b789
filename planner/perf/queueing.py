"""Capacity of a replica for a *distribution* of request lengths at a latency percentile.

:meth:`planner.perf.model.ReplicaModel.capacity` sizes a replica for one representative
(input, output) pair and a mean-based statistic. Real traffic has long tails (the Azure 2023 code
trace: median prompt 1,564 tokens, mean 2,048, p99 7,414), and operators state SLOs as
percentiles ("p99 TTFT under 2 s") or attainment ("99 % of requests within every target"). This
module predicts, for Poisson arrivals at rate ``λ`` of requests whose lengths follow a
:class:`LengthMix`, the distribution of every request's TTFT and TBT on one replica with chunked
prefill, and from it the largest rate that meets the targets at the requested statistic. The
equations (docs/performance-model.md, "Capacity for a distribution") in brief, all in ms:

* **Decode and the mean step.** With ``a0 + b·N`` the decode step of ``N`` sequences
  (``b = a1 + c·ctx``, ``ctx`` the time-averaged context ``E[O·(I + O/2)] / E[O]``) and each step
  carrying its share ``λ·τ·E[pw]`` of the prompt work, the mean step ``τ`` solves
  ``τ = a0 + b·λ·E[O]·τ + λ·τ·E[pw]``, so ``τ = a0 / (1 − λ·(E[O]·b + E[pw]))``: a closed form,
  stable while the bracket is positive. ``N_d = λ·E[O]·τ`` sequences decode on average.
* **Prefill queue (M/G/1).** A prompt of ``I`` tokens occupies the prefill budget for
  ``S = pw(I) + (I / chunk)·t_dec``; with ``ρ = λ·E[S]`` the mean wait is Pollaczek-Khinchine's
  ``E[W] = κ_w·λ·E[S²] / (2(1 − ρ))`` (the second moment of the prompt work), and the wait's tail
  is taken as exponential with an atom at zero: ``P(W > x) = ρ·exp(−x·ρ / E[W])``.
* **TTFT of a request** of ``I`` tokens: the step in flight (``τ``) + ``W`` + its own chunks
  ``⌈I / chunk⌉·t_dec + pw(I)`` (+ pipeline fill with ``pp > 1``); its CDF is a mixture over the
  length distribution.
* **TBT of a request** (its mean time between tokens, as the simulator and MLPerf's TPOT measure
  it) of ``O`` output tokens over ``n = O − 1`` steps: ``τ`` plus the noise of the prompt work that
  arrives during its life ``L = n·τ`` (compound Poisson, variance ``λ·L·E[pw²]``) and of the batch
  (``b²·N_d·min(1, E[O]·τ / L)`` per step²), amplified by ``1 / (1 − λ·(E[O]·b + E[pw]))``,
  scaled by ``κ_t`` and taken as normal.
* **Admission.** Concurrency ``N = λ·(E[O]·τ + E[TTFT])`` (Little) must leave a normal tail of
  ``z·√N`` below ``min(max_num_seqs, KV tokens / E[I + O])``; a request whose prompt + output
  exceeds the KV cache never runs.
* **Attainment** = ``Σ_j w_j · P(TTFT_j ≤ T) · P(TBT_j ≤ B) · P(e2e_j ≤ E)`` over the length table.

:func:`capacity` bisects on ``λ`` for every prefill chunk in :data:`CHUNK_CANDIDATES` (vLLM's
``max_num_batched_tokens``) and keeps the largest rate. ``κ_w`` and ``κ_t`` are fitted against the
discrete-event simulator (:mod:`planner.sim.engine`, which runs the same step-time model request by
request) by ``tools/calibrate_queueing.py``; the held-out error is in docs/performance-model.md and
guarded by tests/test_queueing.py.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from planner.errors import InputError
from planner.perf.model import MAX_NUM_SEQS, Capacity
from planner.scenario.schema import statistic_level

CHUNK_CANDIDATES = (2048, 1536, 1024, 768, 512, 384, 256, 192, 128, 96, 64)
"""Prefill chunks (vLLM ``max_num_batched_tokens``) tried; the one with the largest capacity is kept."""
RATE_REL_TOL = 1e-4
"""Bisection on the rate stops when the bracket is this narrow, relative to its upper end."""


@lru_cache(maxsize=1)
def queueing_calibration() -> dict:
    """``κ_w``, ``κ_t`` fitted by ``tools/calibrate_queueing.py`` (``data/queueing_calibration.json``)."""
    text = resources.files("planner_data").joinpath("queueing_calibration.json").read_text(encoding="utf-8")
    return json.loads(text)


@dataclass(frozen=True)
class LengthMix:
    """A distribution of (input, output) token lengths: the rows of a shape's distribution table, or
    one representative pair. ``w`` sums to 1."""

    inp: np.ndarray
    out: np.ndarray
    w: np.ndarray

    @staticmethod
    def point(input_tokens: float, output_tokens: float) -> "LengthMix":
        return LengthMix(np.array([float(input_tokens)]), np.array([float(output_tokens)]), np.array([1.0]))

    @staticmethod
    def from_table(df) -> "LengthMix":
        """From a frame with ``input_tokens``, ``output_tokens`` and ``weight`` (normalised here)."""
        w = df["weight"].to_numpy(float)
        if len(w) == 0 or not np.all(np.isfinite(w)) or w.min() < 0 or w.sum() <= 0:
            raise InputError("a length distribution needs at least one row and non-negative weights")
        return LengthMix(np.maximum(df["input_tokens"].to_numpy(float), 1.0),
                         np.maximum(df["output_tokens"].to_numpy(float), 1.0), w / w.sum())

    @property
    def mean_input(self) -> float:
        return float(self.w @ self.inp)

    @property
    def mean_output(self) -> float:
        return float(self.w @ self.out)


@dataclass(frozen=True)
class Targets:
    """What a row is computed for: TTFT (network excluded), TBT and optional end-to-end targets at
    ``statistic`` (one of :data:`planner.scenario.schema.STATISTICS`), and optionally the fraction of
    requests that must meet every target at once."""

    ttft_ms: float
    tbt_ms: float
    e2e_ms: float | None = None
    statistic: str = "p99"
    attainment: float | None = None


@dataclass(frozen=True)
class Operating:
    """The predicted operating point of one replica at ``rate_rps`` with prefill chunk ``chunk``.

    Per length row ``j`` (arrays): ``own_ms`` (own prefill through the pipeline), ``tbt_sd_ms``
    (standard deviation of the request's mean TBT) and ``fits`` (prompt + output fit the KV cache).
    """

    rate_rps: float
    chunk: int
    step_ms: float          # mean step = mean TBT
    t_dec_ms: float         # decode part of a step at the mean batch
    decoding: float         # mean decoding sequences
    concurrency: float      # mean admitted sequences (Little)
    seq_limit: float        # admission limit: min(max_num_seqs, KV tokens / E[I + O])
    rho: float              # prefill-queue utilisation
    wait_ms: float          # mean prefill-queue wait
    own_ms: np.ndarray
    tbt_sd_ms: np.ndarray
    fits: np.ndarray
    life_work_ms: np.ndarray  # mean extra time over a request's life (prompt work and batch noise)
    mix: LengthMix
    prefill_share: float    # prompt work per unit time (ms per ms)
    ctx_tokens: float       # time-averaged context of a decoding sequence

    # ---- per-row probabilities
    def p_ttft(self, target_ms: float) -> np.ndarray:
        slack = target_ms - self.own_ms - self.step_ms
        if self.rho <= 0 or self.wait_ms <= 0:
            return np.where(slack >= 0, 1.0, 0.0)
        tail = self.rho * np.exp(-np.maximum(slack, 0.0) * self.rho / self.wait_ms)
        return np.where(slack >= 0, 1.0 - tail, 0.0)

    def p_tbt(self, target_ms: float) -> np.ndarray:
        # the extra time over the request's life, X = (TBT - tau) n + mu >= 0, is gamma-like with mean mu
        # and sd n * tbt_sd (Wilson-Hilferty: (X / mu)^(1/3) is nearly normal)
        n = np.maximum(self.mix.out - 1.0, 1.0)
        mu = np.maximum(self.life_work_ms, 1e-9)
        sd = np.maximum(n * self.tbt_sd_ms, 1e-9)
        k = (mu / sd) ** 2
        x = np.maximum(mu + (target_ms - self.step_ms) * n, 0.0)
        z = (np.cbrt(x / mu) - (1.0 - 1.0 / (9.0 * k))) / np.sqrt(1.0 / (9.0 * k))
        p = 0.5 * (1.0 + _erf(z / math.sqrt(2.0)))
        return np.where(self.mix.out <= 1, 1.0, np.where(x <= 0, 0.0, p))

    def p_e2e(self, target_ms: float | None) -> np.ndarray:
        if target_ms is None:
            return np.ones_like(self.own_ms)
        n = np.maximum(self.mix.out - 1.0, 0.0)
        return self.p_ttft(target_ms - n * self.step_ms)

    # ---- over the mixture
    def attainment(self, t: Targets) -> float:
        w = self.mix.w * self.fits
        return float(w @ (self.p_ttft(t.ttft_ms) * self.p_tbt(t.tbt_ms) * self.p_e2e(t.e2e_ms)))

    def mean_ttft_ms(self) -> float:
        return float(self.mix.w @ self.own_ms) + self.step_ms + self.wait_ms

    def mean_e2e_ms(self) -> float:
        return self.mean_ttft_ms() + float(self.mix.w @ np.maximum(self.mix.out - 1.0, 0.0)) * self.step_ms

    def ttft_quantile_ms(self, level: float) -> float:
        return _mixture_quantile(lambda x: float((self.mix.w * self.fits) @ self.p_ttft(x)), level,
                                 hi=float(self.own_ms.max()) + self.step_ms + 1.0)

    def tbt_quantile_ms(self, level: float) -> float:
        return _mixture_quantile(lambda x: float((self.mix.w * self.fits) @ self.p_tbt(x)), level,
                                 hi=self.step_ms + 1.0)

    def e2e_quantile_ms(self, level: float) -> float:
        n = float(np.max(np.maximum(self.mix.out - 1.0, 0.0)))
        return _mixture_quantile(lambda x: float((self.mix.w * self.fits) @ self.p_e2e(x)), level,
                                 hi=float(self.own_ms.max()) + (n + 1.0) * self.step_ms + 1.0)

    def admits(self, level: float) -> bool:
        """Whether the admitted sequences stay below the limit with probability ``level`` (normal tail)."""
        z = _norm_ppf(level)
        return self.concurrency + z * math.sqrt(max(self.concurrency, 0.0)) <= self.seq_limit

    def meets(self, t: Targets) -> bool:
        """Whether this operating point meets every target at ``t.statistic`` (and the attainment)."""
        lvl = statistic_level(t.statistic)
        need = max(lvl or 0.5, t.attainment or 0.0)
        if not self.admits(need):
            return False
        w = self.mix.w * self.fits
        if lvl is None:
            if self.mean_ttft_ms() > t.ttft_ms or self.step_ms > t.tbt_ms:
                return False
            if t.e2e_ms is not None and self.mean_e2e_ms() > t.e2e_ms:
                return False
        else:
            if float(w @ self.p_ttft(t.ttft_ms)) < lvl or float(w @ self.p_tbt(t.tbt_ms)) < lvl:
                return False
            if t.e2e_ms is not None and float(w @ self.p_e2e(t.e2e_ms)) < lvl:
                return False
        return t.attainment is None or self.attainment(t) >= t.attainment

    def latencies(self, statistic: str) -> tuple[float, float, float]:
        """(TTFT, TBT, e2e) at ``statistic``: means, or the mixture's percentiles."""
        lvl = statistic_level(statistic)
        if lvl is None:
            return self.mean_ttft_ms(), self.step_ms, self.mean_e2e_ms()
        return self.ttft_quantile_ms(lvl), self.tbt_quantile_ms(lvl), self.e2e_quantile_ms(lvl)

    def power_parts(self, rm) -> tuple[float, float, float]:
        """(overhead, memory-bound, compute-bound) ms of a mean step, prompt work included."""
        ctx, n = self.ctx_tokens, self.decoding
        oh = rm.oh0 + n * rm.oh1
        mem = rm.mem0 + n * rm.mem1 + n * ctx * rm.mem2
        cmp_ = n * rm.cmp1 + n * ctx * rm.cmp2 + self.prefill_share * self.step_ms
        return oh, mem, cmp_


@dataclass(frozen=True)
class _Moments:
    """What the operating point needs of (replica, mix) that does not depend on the rate or chunk."""

    a0: float                # decode step at batch 0
    ctx: float               # time-averaged context of a decoding sequence, E[O (I + O/2)] / E[O]
    b: float                 # decode step per sequence at that context
    EO: float                # mean output tokens
    pw: np.ndarray           # prompt work per length row
    Epw: float
    Epw2: float
    kv_tokens: float
    seq_limit: float         # min(max_num_seqs, KV tokens / E[I + O])
    xl1: float               # pipeline fill per prompt token (and per token², below), pp > 1
    xl2: float


def _moments(rm, mix: LengthMix) -> _Moments:
    I, O, w = mix.inp, mix.out, mix.w
    EO = float(w @ O)
    ctx = float(w @ (O * (I + O / 2.0))) / EO
    pw = rm.pf1 * I + rm.pf2 * I * I
    kv_tokens = rm.kv_tokens
    limit = min(float(MAX_NUM_SEQS), kv_tokens / float(w @ (I + O))) if kv_tokens > 0 else 0.0
    return _Moments(a0=rm.oh0 + rm.mem0, ctx=ctx, b=rm.oh1 + rm.mem1 + rm.cmp1 + (rm.mem2 + rm.cmp2) * ctx,
                    EO=EO, pw=pw,
                    Epw=float(w @ pw), Epw2=float(w @ (pw * pw)), kv_tokens=kv_tokens, seq_limit=limit,
                    xl1=max(rm.pf_lat1 - rm.pf1, 0.0), xl2=max(rm.pf_lat2 - rm.pf2, 0.0))


def operate(rm, mix: LengthMix, rate_rps: float, chunk: int, kappa: tuple[float, float] | None = None,
            moments: _Moments | None = None) -> Operating | None:
    """The operating point of replica model ``rm`` at ``rate_rps`` (None when unstable). ``moments``:
    :func:`_moments` of (rm, mix), when the caller evaluates many rates."""
    kw, kt = kappa if kappa is not None else _kappas()
    mo = moments if moments is not None else _moments(rm, mix)
    lam = rate_rps / 1e3
    I, O, w = mix.inp, mix.out, mix.w
    b, pw = mo.b, mo.pw
    den = 1.0 - lam * (mo.EO * b + mo.Epw)
    if den <= 0:
        return None
    tau = mo.a0 / den
    nd = lam * mo.EO * tau
    t_dec = mo.a0 + b * nd
    S = pw + I / chunk * t_dec
    rho = lam * float(w @ S)
    if rho >= 1.0:
        return None
    wait = kw * lam * float(w @ (S * S)) / (2.0 * (1.0 - rho))
    own = np.ceil(I / chunk) * t_dec + pw + mo.xl1 * I + mo.xl2 * I * I
    n = np.maximum(O - 1.0, 1.0)
    life = n * tau
    soj = mo.EO * tau
    # prompts arriving during the request's own wait and prefill queue behind it and are served
    # during its decode: the window of prompt work it sees is its life plus that time
    window = life + own + wait
    var = lam * window * mo.Epw2 + (n * b) ** 2 * nd * np.minimum(1.0, soj / life)
    sd = math.sqrt(kt) * np.sqrt(var) / (n * den)
    life_work = (lam * window * mo.Epw + n * b * nd) / den
    fits = ((I + O) <= mo.kv_tokens).astype(float)
    mean_ttft = float(w @ own) + tau + wait
    conc = lam * (mo.EO * tau + mean_ttft)
    return Operating(rate_rps=rate_rps, chunk=int(chunk), step_ms=tau, t_dec_ms=t_dec, decoding=nd,
                     concurrency=conc, seq_limit=mo.seq_limit, rho=rho, wait_ms=wait, own_ms=own, tbt_sd_ms=sd,
                     fits=fits, life_work_ms=life_work, mix=mix, prefill_share=lam * mo.Epw, ctx_tokens=mo.ctx)


def stable_rate(rm, mix: LengthMix, moments: _Moments | None = None) -> float:
    """The rate (req/s) at which the mean step diverges: an upper bound on any stable rate."""
    mo = moments if moments is not None else _moments(rm, mix)
    return 1e3 / (mo.EO * mo.b + mo.Epw)


def max_rate(rm, mix: LengthMix, targets: Targets, chunk: int,
             kappa: tuple[float, float] | None = None) -> tuple[float, Operating] | None:
    """Largest rate (req/s) meeting ``targets`` with prefill chunk ``chunk``, by bisection (the
    targets are met on ``[0, rate]``: every probability falls as the rate grows)."""
    mo = _moments(rm, mix)
    hi = stable_rate(rm, mix, mo)
    lo = hi * 1e-6
    lo_op = operate(rm, mix, lo, chunk, kappa, mo)
    if lo_op is None or not lo_op.meets(targets):
        return None
    while hi - lo > RATE_REL_TOL * hi:
        mid = 0.5 * (lo + hi)
        op = operate(rm, mix, mid, chunk, kappa, mo)
        if op is not None and op.meets(targets):
            lo, lo_op = mid, op
        else:
            hi = mid
    return lo, lo_op


def best_operating(rm, mix: LengthMix, targets: Targets, chunks=CHUNK_CANDIDATES,
                   kappa: tuple[float, float] | None = None) -> Operating | None:
    """The operating point of largest rate over the prefill chunks (ties: the larger chunk)."""
    best = None
    for c in chunks:
        r = max_rate(rm, mix, targets, int(c), kappa)
        if r is not None and (best is None or r[0] > best.rate_rps * (1 + 1e-9)):
            best = r[1]
    return best


def capacity(rm, mix: LengthMix, targets: Targets) -> Capacity | None:
    """The replica's :class:`~planner.perf.model.Capacity` for ``mix`` at ``targets``: ``max_rps`` the
    largest rate meeting them (over the prefill chunks), the latencies at ``targets.statistic`` there,
    ``batch`` the mean decoding sequences, ``busy_power_w`` the power of a mean step (prompt work
    included), ``chunk_tokens`` the chunk chosen. None when even a trickle misses a target."""
    op = best_operating(rm, mix, targets)
    if op is None:
        return None
    ttft, tbt, e2e = op.latencies(targets.statistic)
    return Capacity(max_rps=op.rate_rps, ttft_ms=ttft, tbt_ms=tbt, e2e_ms=e2e, batch=max(int(round(op.decoding)), 1),
                    busy_power_w=rm.power_w(1.0, op.power_parts(rm)), idle_power_w=rm.idle_w, chunk_tokens=op.chunk)


def model_error() -> float:
    """The queueing model's held-out median relative error of ``max_rps`` against the simulator."""
    return float(queueing_calibration()["held_out_median_error"])


def _kappas() -> tuple[float, float]:
    cal = queueing_calibration()
    return float(cal["kappa_wait"]), float(cal["kappa_tbt"])


def _erf(x):
    return np.vectorize(math.erf, otypes=[float])(x)


def _norm_ppf(p: float) -> float:
    """Standard normal quantile, by bisection on ``erf`` (ample for a sizing margin)."""
    if p <= 0.5:
        return 0.0 if p == 0.5 else -_norm_ppf(1.0 - p)
    p = min(p, 1 - 1e-12)
    lo, hi = 0.0, 10.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if 0.5 * (1.0 + math.erf(mid / math.sqrt(2.0))) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _mixture_quantile(cdf, level: float, hi: float) -> float:
    """Smallest x with ``cdf(x) >= level`` (bisection to 0.01 ms), growing ``hi`` as needed; inf when
    the mixture never reaches the level (requests that cannot run)."""
    lo = 0.0
    n = 0
    while cdf(hi) < level:
        lo, hi = hi, hi * 2.0
        n += 1
        if n > 60:
            return math.inf
    while hi - lo > 0.01:
        mid = 0.5 * (lo + hi)
        if cdf(mid) >= level:
            hi = mid
        else:
            lo = mid
    return hi

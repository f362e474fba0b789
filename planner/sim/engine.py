"""Discrete-event engine: iteration-level continuous batching on LLM serving replicas.

This module knows nothing of plans or scenarios: it takes a list of deployments (a replica model,
a replica count and the engine limits) and a sorted stream of requests already assigned to
deployments, and returns when each request got its first and its last token, and the energy and
busy time of every replica. :mod:`planner.sim` builds its inputs from a plan and turns its
output into a report. The model is described in docs/simulation.md.

One replica runs engine iterations ("steps") back to back while it has work, like vLLM's scheduler
with chunked prefill:

* every running (decoding) sequence gets one token per step;
* the step also carries up to ``chunk_tokens`` prompt tokens: first the rest of prompts already
  being prefilled (in admission order), then new requests taken from the waiting queue in policy
  order, while a sequence slot (``max_seqs``) and KV-cache room are free. A request's KV cache
  (prompt + output tokens) is reserved when it is admitted and freed when it finishes, so there is
  no preemption; the head of the queue blocks the queue when it does not fit (strict priority);
* a request's first token comes at the end of the step that carries the last chunk of its prompt
  (plus the pipeline fill latency when ``pp > 1``), its last token ``output − 1`` steps later.

Step time and energy come from :class:`planner.perf.model.ReplicaModel`, the model the profile
table was made with: a step with ``n`` decoding sequences whose contexts sum to ``S`` tokens and
prompt chunks ``c`` (each starting at prompt position ``p``) takes
``decode_step_ms(n, S / n) + Σ pf1·c + pf2·((p + c)² − p²)`` ms. Its energy splits the same time
into software overhead (at idle power), memory-bound and compute-bound work (prompt chunks are
compute-bound) at the replica's clock; a replica without work draws idle power.

Speed: runs of steps without prompt work have a closed form (the context grows by ``n`` tokens per
step, so their durations form an arithmetic series), so a replica advances from one event to the
next (an arrival, a prefill step, a completion) in O(1) rather than one step at a time. An arrival
at a busy replica cuts the run at the end of the step in flight. The cost is a few heap operations
per request, independent of the output length.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from heapq import heappop, heappush

import numpy as np

from planner.perf.model import ReplicaModel


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment: ``replicas`` identical replicas of ``model``."""

    model: ReplicaModel
    replicas: int
    chunk_tokens: int
    """Prompt tokens a step may carry (vLLM ``max_num_batched_tokens``)."""
    max_seqs: int
    """Most sequences in a replica's batch, prefilling ones included (vLLM ``max_num_seqs``)."""
    kv_tokens: int
    """KV-cache room of one replica, in tokens; a request reserves prompt + output tokens."""


@dataclass
class EngineResult:
    """Per request (in input order): ``first_ms``/``finish_ms`` (NaN if dropped), ``replica`` (global
    index, −1 if dropped); per replica (deployments' replicas in order): energy in millijoules over
    its busy steps, busy ms, number of steps, time-integral of the batch (sequence·ms), end of its
    last step; ``events``: events processed."""

    first_ms: np.ndarray
    finish_ms: np.ndarray
    replica: np.ndarray
    busy_energy_mj: np.ndarray
    busy_ms: np.ndarray
    steps: np.ndarray
    batch_ms: np.ndarray
    last_end_ms: np.ndarray
    events: int
    hit: np.ndarray | None = None
    """Per request: whether a replica went down (``down``) while it waited or ran there (it was then
    started again from scratch on another replica of its deployment)."""


class _Replica:
    __slots__ = ("idx", "a0", "a1", "c", "pf1", "pf2", "xl1", "xl2", "e0", "e1", "ec", "ecmp", "chunk",
                 "max_seqs", "kv_cap", "busy", "t0", "k", "dur", "ver", "n", "S", "step_no", "fin",
                 "prefill", "waiting", "nseq", "kv_used", "W", "plan", "energy", "busy_ms", "steps",
                 "batch_ms", "last_end")

    def __init__(self, idx: int, d: DeploymentSpec):
        m = d.model
        self.idx = idx
        self.a0 = m.oh0 + m.mem0
        self.a1 = m.oh1 + m.mem1 + m.cmp1
        self.c = m.mem2 + m.cmp2
        self.pf1, self.pf2 = m.pf1, m.pf2
        # pipeline fill latency a prompt sees beyond the replica time its chunks take (pp > 1 only)
        self.xl1, self.xl2 = max(m.pf_lat1 - m.pf1, 0.0), max(m.pf_lat2 - m.pf2, 0.0)
        # energy (W·ms = mJ): overhead at idle power, memory-bound and compute-bound parts
        self.e0 = m.idle_w * m.oh0 + m.mem_w * m.mem0
        self.e1 = m.idle_w * m.oh1 + m.mem_w * m.mem1 + m.cmp_w * m.cmp1
        self.ec = m.mem_w * m.mem2 + m.cmp_w * m.cmp2
        self.ecmp = m.cmp_w
        self.chunk = d.chunk_tokens
        self.max_seqs = d.max_seqs
        self.kv_cap = d.kv_tokens
        self.busy = False
        self.t0 = 0.0        # start of the current run of steps
        self.k = 0           # steps in the current run
        self.dur = 0.0       # its duration
        self.ver = 0         # bumps when the scheduled end changes
        self.n = 0           # decoding sequences
        self.S = 0.0         # sum of their contexts (tokens)
        self.step_no = 0     # steps completed
        self.fin: list = []  # heap (finishing step, request)
        self.prefill: list = []   # [request, prompt tokens done], admission order
        self.waiting: list = []   # heap (policy key, request)
        self.nseq = 0        # admitted sequences (prefilling + decoding)
        self.kv_used = 0
        self.W = 0.0         # prompt work (ms) of the current step; 0 for a decode-only run
        self.plan: list = []  # (prefill entry, tokens) carried by the current step
        self.energy = 0.0
        self.busy_ms = 0.0
        self.steps = 0
        self.batch_ms = 0.0
        self.last_end = 0.0

    def run_time(self, k: int) -> float:
        """Duration of ``k`` decode-only steps from the current state."""
        n = self.n
        return k * (self.a0 + n * self.a1 + self.c * self.S) + self.c * n * k * (k - 1) / 2.0

    def steps_done_by(self, elapsed: float) -> int:
        """Decode-only steps of the current run completed within ``elapsed`` ms of its start."""
        A = self.a0 + self.n * self.a1 + self.c * self.S
        B = self.c * self.n
        if B > 0:
            b = A - B / 2.0
            j = int((-b + math.sqrt(b * b + 2.0 * B * elapsed)) / B)
        else:
            j = int(elapsed / A)
        j = max(j, 0)
        while self.run_time(j + 1) <= elapsed:
            j += 1
        while j > 0 and self.run_time(j) > elapsed:
            j -= 1
        return j


def run(deployments: list[DeploymentSpec], t_ms: np.ndarray, inp: np.ndarray, out: np.ndarray,
        dep: np.ndarray, key: np.ndarray, seed: int = 0,
        down: dict[int, list[tuple[float, float]]] | None = None) -> EngineResult:
    """Simulate requests arriving at replicas.

    ``t_ms``: arrival time at the deployment (sorted ascending); ``inp``/``out``: prompt and output
    tokens (≥ 1); ``dep``: deployment index; ``key``: queue priority (smaller first; ties by input
    order). The replica is picked by the power of two choices: of two replicas drawn at random (a
    seeded RNG), the one with fewer outstanding requests (waiting + admitted). Requests whose prompt +
    output exceed a replica's KV room are dropped. Runs until every request finishes.

    ``down``: per replica (global index), intervals ``(start_ms, end_ms)`` when it is out of service (a
    spot VM reclaimed and restarting, a replica still loading). When one starts, every request waiting or
    running there is *hit*: it starts again from scratch (prompt included) on another replica of its
    deployment that is up, as a load balancer's retry would; new arrivals avoid replicas that are down,
    and wait for the first to come back when all are."""
    N = len(t_ms)
    if N and np.any(np.diff(t_ms) < 0):
        raise ValueError("arrivals must be sorted by time")
    reps: list[_Replica] = []
    first_rep = []
    for d in deployments:
        first_rep.append(len(reps))
        for _ in range(d.replicas):
            reps.append(_Replica(len(reps), d))
    n_of = [d.replicas for d in deployments]
    T = t_ms.tolist()
    I = [max(int(x), 1) for x in inp.tolist()]
    O = [max(int(x), 1) for x in out.tolist()]
    D = dep.tolist()
    K = key.tolist()
    first = [math.nan] * N
    finish = [math.nan] * N
    lag = [0.0] * N      # pipeline fill latency of the first token, carried by every later token
    where = [-1] * N
    rng = random.Random(seed)
    rand = rng.random
    heap: list = []
    ctr = 0
    events = 0

    def start(r: _Replica, now: float) -> None:
        """Plan the next step (or run of decode steps) of ``r`` at ``now``."""
        nonlocal ctr
        budget = r.chunk
        W = 0.0
        plan = []
        pf1, pf2 = r.pf1, r.pf2
        for e in r.prefill:
            if budget <= 0:
                break
            rid, done = e[0], e[1]
            c = min(I[rid] - done, budget)
            W += pf1 * c + pf2 * ((done + c) * (done + c) - done * done)
            plan.append((e, c))
            budget -= c
        wq = r.waiting
        while wq and budget > 0 and r.nseq < r.max_seqs:
            rid = wq[0][1]
            need = I[rid] + O[rid]
            if r.kv_used + need > r.kv_cap:
                break
            heappop(wq)
            r.nseq += 1
            r.kv_used += need
            e = [rid, 0]
            r.prefill.append(e)
            c = min(I[rid], budget)
            W += pf1 * c + pf2 * c * c
            plan.append((e, c))
            budget -= c
        r.t0 = now
        if plan:
            r.W = W
            r.plan = plan
            r.k = 1
            r.dur = r.a0 + r.n * r.a1 + r.c * r.S + W
        elif r.n:
            r.W = 0.0
            r.plan = []
            r.k = r.fin[0][0] - r.step_no
            r.dur = r.run_time(r.k)
        else:
            r.busy = False
            return
        r.busy = True
        r.ver += 1
        ctr += 1
        heappush(heap, (now + r.dur, ctr, r.idx, r.ver))

    def end(r: _Replica, now: float) -> None:
        """Finish the current step or run of ``r`` at ``now``."""
        k, n, S0 = r.k, r.n, r.S
        prefill_step = bool(r.plan)
        if prefill_step:
            r.energy += r.e0 + n * r.e1 + r.ec * S0 + r.ecmp * r.W
        else:
            r.energy += k * (r.e0 + n * r.e1) + r.ec * (k * S0 + n * k * (k - 1) / 2.0)
        r.busy_ms += r.dur
        r.batch_ms += (n + len(r.plan)) * r.dur if prefill_step else n * r.dur
        r.steps += k
        r.last_end = now
        r.S = S0 + n * k
        r.step_no += k
        fin = r.fin
        while fin and fin[0][0] <= r.step_no:
            rid = heappop(fin)[1]
            finish[rid] = now + lag[rid]
            r.n -= 1
            r.S -= I[rid] + O[rid]
            r.nseq -= 1
            r.kv_used -= I[rid] + O[rid]
        if prefill_step:
            done_any = False
            for e, c in r.plan:
                e[1] += c
                rid = e[0]
                if e[1] >= I[rid]:
                    done_any = True
                    p = I[rid]
                    x = r.xl1 * p + r.xl2 * p * p
                    t1 = now + x
                    first[rid] = t1
                    lag[rid] = x
                    if O[rid] == 1:
                        finish[rid] = t1
                        r.nseq -= 1
                        r.kv_used -= p + 1
                    else:
                        r.n += 1
                        r.S += p + 1
                        heappush(fin, (r.step_no + O[rid] - 1, rid))
            if done_any:
                r.prefill = [e for e in r.prefill if e[1] < I[e[0]]]
            r.plan = []
            r.W = 0.0

    # replicas out of service: (time, 0 = down / 1 = up, replica) events; retried requests
    is_down = [False] * len(reps)
    ctl: list = []
    for ri, spans in (down or {}).items():
        for a0, a1 in spans:
            if a1 > a0:
                heappush(ctl, (float(a0), 0, int(ri)))
                heappush(ctl, (float(a1), 1, int(ri)))
    retry: list = []      # heap (time, request)
    parked: dict[int, list] = {}   # deployment -> requests waiting for a replica to come back
    hit = [False] * N
    dep_of = [0] * len(reps)
    for d, b0 in enumerate(first_rep):
        for j in range(n_of[d]):
            dep_of[b0 + j] = d

    def pick(d: int):
        """The replica of deployment ``d`` an arrival joins: the power of two choices among its replicas
        that are up (None when none is)."""
        nr = n_of[d]
        base = first_rep[d]
        cand = None
        if down:
            cand = [base + j for j in range(nr) if not is_down[base + j]]
            if not cand:
                return None
            nr = len(cand)
        if nr == 1:
            return reps[base if cand is None else cand[0]]
        ia, ib = int(rand() * nr), int(rand() * nr)
        a = reps[base + ia if cand is None else cand[ia]]
        b = reps[base + ib if cand is None else cand[ib]]
        return a if a.nseq + len(a.waiting) <= b.nseq + len(b.waiting) else b

    def enqueue(r: _Replica, rid: int, now: float) -> None:
        nonlocal ctr
        where[rid] = r.idx
        heappush(r.waiting, (K[rid], rid))
        if not r.busy:
            # start once every arrival of this instant is queued (they compete by key)
            r.busy = True
            r.k = 0
            r.ver += 1
            ctr += 1
            heappush(heap, (now, ctr, r.idx, r.ver))
        elif r.k > 1:
            el = now - r.t0
            j = r.steps_done_by(el)
            if j == 0 or r.run_time(j) < el:
                j += 1       # cut after the step in flight; at a step boundary, cut there
            if j < r.k:
                r.k = j
                r.dur = r.run_time(j)
                r.ver += 1
                ctr += 1
                heappush(heap, (r.t0 + r.dur, ctr, r.idx, r.ver))

    def take_down(r: _Replica, now: float) -> None:
        """``r`` goes out of service at ``now``: its requests are retried elsewhere."""
        victims = [rid for _, rid in r.waiting] + [e[0] for e in r.prefill] + [rid for _, rid in r.fin]
        if r.busy and r.k:  # the step in flight is lost; its time counts as busy
            r.busy_ms += max(now - r.t0, 0.0)
            r.last_end = now
        r.waiting, r.prefill, r.fin, r.plan = [], [], [], []
        r.n = r.nseq = r.kv_used = 0
        r.S = r.W = 0.0
        r.busy = False
        r.k = 0
        r.ver += 1
        for rid in victims:
            hit[rid] = True
            first[rid] = finish[rid] = math.nan
            lag[rid] = 0.0
            where[rid] = -1
            heappush(retry, (now, rid))

    def arrive(rid: int, now: float) -> bool:
        """Queue request ``rid`` at a replica of its deployment (or park it until one is up); False when
        no replica can ever hold it (dropped)."""
        d = D[rid]
        r = pick(d)
        if r is None:
            parked.setdefault(d, []).append(rid)
            return True
        if I[rid] + O[rid] > r.kv_cap or r.max_seqs < 1:
            return False
        enqueue(r, rid, now)
        return True

    i = 0
    while True:
        nxt_arr = T[i] if i < N else math.inf
        nxt_ret = retry[0][0] if retry else math.inf
        nxt_ctl = ctl[0][0] if ctl else math.inf
        nxt_step = heap[0][0] if heap else math.inf
        if nxt_ctl <= min(nxt_arr, nxt_ret, nxt_step) and ctl:
            now, kind, ri = heappop(ctl)
            events += 1
            r = reps[ri]
            if kind == 0:
                is_down[ri] = True
                take_down(r, now)
            else:
                is_down[ri] = False
                for rid in parked.pop(dep_of[ri], []):
                    arrive(rid, now)
            continue
        if retry and nxt_ret <= min(nxt_arr, nxt_step):
            now, rid = heappop(retry)
            events += 1
            arrive(rid, now)
            continue
        if i < N and (not heap or T[i] <= heap[0][0]):
            if down:
                if arrive(i, T[i]):
                    events += 1
                i += 1
                continue
            d = D[i]   # the hot path (no replica ever down): pick() inlined
            nr = n_of[d]
            base = first_rep[d]
            if nr == 1:
                r = reps[base]
            else:
                a = reps[base + int(rand() * nr)]
                b = reps[base + int(rand() * nr)]
                r = a if a.nseq + len(a.waiting) <= b.nseq + len(b.waiting) else b
            if I[i] + O[i] <= r.kv_cap and r.max_seqs >= 1:
                enqueue(r, i, T[i])
                events += 1
            i += 1
        elif heap:
            now, _, ri, ver = heappop(heap)
            r = reps[ri]
            if ver != r.ver:
                continue
            events += 1
            if r.k:
                end(r, now)
            start(r, now)
        else:
            break

    return EngineResult(
        first_ms=np.array(first, dtype=float), finish_ms=np.array(finish, dtype=float),
        replica=np.array(where, dtype=np.int64),
        busy_energy_mj=np.array([r.energy for r in reps], dtype=float),
        busy_ms=np.array([r.busy_ms for r in reps], dtype=float),
        steps=np.array([r.steps for r in reps], dtype=np.int64),
        batch_ms=np.array([r.batch_ms for r in reps], dtype=float),
        last_end_ms=np.array([r.last_end for r in reps], dtype=float),
        events=events, hit=np.array(hit, dtype=bool))

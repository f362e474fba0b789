"""Many solves in one long-running process, as an orchestrator makes them.

Before the slot workers became threads, a multi-slot solve after any earlier HiGHS run with more
than one thread failed ("the solver failed for slot 0: Not Set"), because HiGHS's task scheduler
was forked half-alive into the workers, or was sized for another thread count on the same thread.
"""

from __future__ import annotations

import itertools
import threading

import pytest
from builders import profile, scenario

import planner

ONE_GPU = {"type": "G", "count": 10, "price_usd_per_gpu_hour": 1.0}


def _budget_doc():
    """Hand instance (tests/test_hand_instances.py::test_binding_budget): without a budget both slots
    go to clean A (20 USD, 0.052 kg); with 11 USD one slot moves to dirty B: 0.13 kg."""
    return scenario(
        regions={"A": {"gpus": [dict(ONE_GPU, price_usd_per_gpu_hour=10.0)]},
                 "B": {"gpus": [dict(ONE_GPU, price_usd_per_gpu_hour=1.0)]}},
        carbon={"A": [100.0, 100.0], "B": [400.0, 400.0]},
        demand={("k", "o"): [8.0, 8.0]},
        slots=2,
    )


def _multi_doc():
    """Three slots, two regions, two clocks: each slot's optimum on its own (slot by slot)."""
    return scenario(
        regions={"A": {"gpus": [ONE_GPU]}, "B": {"gpus": [ONE_GPU]}},
        carbon={"A": [100.0, 300.0, 200.0], "B": [250.0, 120.0, 260.0]},
        demand={("k", "o"): [8.0, 14.0, 5.0]},
        profiles=[profile(freq=1000, max_rps=10.0, busy=300.0), profile(freq=800, max_rps=7.0, busy=190.0)],
        slots=3,
    )


def _infeasible_doc():
    """Demand 150 req/s, at most 10 GPUs x 10 req/s: infeasible, explained by the capacity relaxation."""
    return scenario(demand={("k", "o"): [150.0, 20.0]}, slots=2)


CASES = {
    "multi": (_multi_doc, {}),
    "single": (lambda: scenario(), {}),
    "budget": (_budget_doc, {"budget_usd": 11.0}),
    "whole": (_multi_doc, {"decompose": False}),
    "infeasible": (_infeasible_doc, {}),
}


@pytest.fixture(scope="module")
def scenarios():
    return {name: planner.scenario_from_dict(make()) for name, (make, _) in CASES.items()}


@pytest.mark.parametrize("n", [200])
def test_many_mixed_solves_in_one_process(scenarios, n):
    """200 solves cycling over cases x backends x threads (1, 2, default), each plan checked; the
    budget instance keeps its hand optimum (0.13 kg) every time; infeasible ones are explained."""
    combos = list(itertools.product(CASES, ("highs", "pulp", "pyomo"), (1, 2, None)))
    seen = set()
    for i in range(n):
        name, backend, threads = combos[i % len(combos)]
        sc, kw = scenarios[name], CASES[name][1]
        if name == "infeasible":
            with pytest.raises(planner.InfeasibleError) as e:
                planner.solve(sc, "carbon", backend, threads=threads, mip_gap=0.0, **kw)
            assert e.value.explanation.findings, name
        else:
            plan = planner.solve(sc, "carbon", backend, threads=threads, mip_gap=0.0, **kw)
            rep = planner.check(plan, sc)
            assert rep.ok, (i, name, backend, threads, rep.render())
            if name == "budget":
                assert plan.objective.value == pytest.approx(0.13, rel=1e-6)
        seen.add((name, backend, threads))
    assert len(seen) == len(combos)


def test_solves_from_several_threads_at_once(scenarios):
    """Two orchestrator threads solving at the same time get the same plans as one after the other."""
    sc = scenarios["multi"]
    ref = planner.solve(sc, "carbon", mip_gap=0.0, threads=2).without_timings()
    out, errors = [], []

    def work():
        try:
            for _ in range(5):
                out.append(planner.solve(sc, "carbon", mip_gap=0.0, threads=2).without_timings())
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ths = [threading.Thread(target=work) for _ in range(2)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    assert not errors, errors
    assert len(out) == 10 and all(p == ref for p in out)


def test_after_user_code_ran_highs_with_other_thread_counts(scenarios):
    """The reported failure: HiGHS already ran in this process (here: on this very thread, by user code)
    with 2 threads, then with 1; the planner's solves (multi-slot, whole model, budget) still work."""
    import highspy

    for n in (2, 1, 2):
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", n)
        h.addVar(0.0, 1.0)
        h.changeColCost(0, -1.0)
        h.run()
    for name in ("multi", "whole", "budget"):
        sc, kw = scenarios[name], CASES[name][1]
        for threads in (2, 1):
            plan = planner.solve(sc, "carbon", threads=threads, mip_gap=0.0, **kw)
            assert planner.check(plan, sc).ok


def test_run_highs_resizes_this_threads_scheduler():
    """A run asking for another thread count than this thread's HiGHS scheduler has does not fail."""
    import highspy

    from planner.highs_runtime import new_highs, run_highs

    def tiny():
        h = new_highs()
        h.addVar(0.0, 1.0)
        h.changeColCost(0, -1.0)
        return h

    def work(out):
        for n in (2, 1, 3, None, 1):
            h = tiny()
            run_highs(h, n)
            out.append(h.getModelStatus() == highspy.HighsModelStatus.kOptimal)

    out: list[bool] = []
    t = threading.Thread(target=work, args=(out,))
    t.start()
    t.join()
    assert out == [True] * 5

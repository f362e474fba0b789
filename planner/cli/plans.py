"""Commands that make or read plans: ``plan solve``, ``show``, ``check`` and ``simulate``."""

from __future__ import annotations

import json
import re
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from planner.cli.console import ALLOW_DIR_HELP, emit_json, err, esc, finite, stdout_console
from planner.errors import EXIT_OK, EXIT_VIOLATIONS, InfeasibleError, InputError, Problem
from planner.io import check_outputs, write_stdout
from planner.scenario.schema import DEMAND_STATISTIC_PATTERN
from planner.scenario.schema import Objective as ObjectiveOpt
from planner.scenario.schema import TieBreak as TieBreakOpt


class BackendOpt(str, Enum):
    highs = "highs"
    pyomo = "pyomo"
    pulp = "pulp"


def _scenario_for_plan(plan, plan_file: Path, scenario: Optional[Path], allow_dir: Optional[list[Path]]):
    """The scenario a plan is checked or simulated against: --scenario, else the one the plan records.

    Refused (exit 2) when the plan records none, or when the scenario's fingerprint differs."""
    from planner.scenario.loading import load_scenario

    where = "--scenario" if scenario is not None else f"{plan_file}: scenario.source"
    if scenario is None:
        src = plan.scenario.source
        if src is None:
            raise InputError([Problem(str(plan_file), "the plan records no scenario file (it was made from a "
                                                      "scenario built in memory): give --scenario")])
        if src.startswith("<example:") and src.endswith(">"):
            from planner.scenario.defaults import example_path

            try:
                src = str(example_path(src[len("<example:"):-1]))
            except ValueError as e:
                raise InputError([Problem(where, str(e))]) from None
        if src != "<default>" and not Path(src).exists():
            raise InputError([Problem(where, f"the plan's scenario {src} does not exist here: give --scenario")])
        scenario = None if src == "<default>" else Path(src)
    sc = load_scenario(scenario, allow_dirs=allow_dir or ())
    if sc.fingerprint != plan.scenario.fingerprint:
        raise InputError([Problem(where, f"the plan was made for another scenario: the plan's fingerprint is "
                                         f"{plan.scenario.fingerprint[:16]}..., {sc.source} has {sc.fingerprint[:16]}... "
                                         "(a table or the document changed since the plan was made?)")],
                         "scenario does not match the plan")
    return sc


class PolicyOpt(str, Enum):
    fcfs = "fcfs"
    edf = "edf"
    srtf = "srtf"
    llf = "llf"


def solve(
    scenario: Optional[Path] = typer.Argument(None, help="Scenario YAML/JSON file or folder (default: embedded default)."),
    objective: Optional[ObjectiveOpt] = typer.Option(None, "--objective", help="What to minimise (default: the scenario's)."),
    backend: BackendOpt = typer.Option(BackendOpt.highs, "--backend", help="Model builder: highs (fastest), pyomo or pulp."),
    budget: Optional[float] = typer.Option(None, "--budget", help="Budget over the horizon, USD (overrides the scenario)."),
    carbon_cap: Optional[float] = typer.Option(None, "--carbon-cap", help="Emission cap over the horizon, kgCO2e."),
    tie_break: Optional[TieBreakOpt] = typer.Option(None, "--tie-break", help="routing (default: re-route for the secondary objective with the fleet fixed), lexicographic (second MILP) or none."),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="Wall-clock limit for solving, seconds."),
    mip_gap: float = typer.Option(5e-3, "--mip-gap", help="Relative MIP gap at which to stop (the plan reports the gap reached)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="HiGHS threads."),
    seed: Optional[int] = typer.Option(None, "--seed", help="HiGHS random seed."),
    write_model: Optional[Path] = typer.Option(None, "--write-model", help="Write the model given to HiGHS (.mps or .lp)."),
    explain: bool = typer.Option(False, "--explain", help="If infeasible, print the explanation as JSON on stdout."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Plan JSON file (default: stdout)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No summary on stderr."),
    initial_fleet: Optional[Path] = typer.Option(None, "--initial-fleet", metavar="PLAN.json", help="With options.scaling: start from the fleet this plan runs in its last slot (the plan in force), so the first slot's actions are relative to it."),
    demand_statistic: Optional[str] = typer.Option(None, "--demand-statistic", metavar="mean|peak|pNN", help="Size each slot for this statistic of a demand table finer than the slot: mean (default), peak, or a time-weighted percentile such as p95 (overrides the scenario)."),
    whole_model: bool = typer.Option(False, "--whole-model", help="Solve all slots as one model (default: slot by slot when no budget or cap couples them, a rolling horizon with options.scaling)."),
    example: Optional[str] = typer.Option(None, "--example", metavar="NAME", help="Solve an embedded example instead of a file: default, or week (7 days, VMs on demand and spot, the fleet over time)."),
    allow_dir: Optional[list[Path]] = typer.Option(None, "--allow-dir", help=ALLOW_DIR_HELP),
    verify: bool = typer.Option(False, "--verify", help="Simulate the plan and, where a (config, class) misses its class's attainment target (slo.attainment, default 0.99), derate that capacity and re-solve, until every (class, origin) meets its target in simulation."),
    trace: Optional[list[str]] = typer.Option(None, "--trace", help="With --verify: replay this request trace (PATH or PATH=CLASS,CLASS; repeatable). Default: Poisson arrivals at the planned rates."),
    verify_minutes: Optional[float] = typer.Option(None, "--verify-minutes", help="With --verify: simulate the first MINUTES of every slot (default: the whole slot)."),
    verify_iterations: int = typer.Option(5, "--verify-iterations", min=0, max=50, help="With --verify: at most this many re-solves."),
    verify_policy: PolicyOpt = typer.Option(PolicyOpt.fcfs, "--verify-policy", help="With --verify: the replicas' queue order in simulation."),
    verify_load: float = typer.Option(1.0, "--verify-load", help="With --verify: multiply every simulated arrival rate (headroom for load above the forecast)."),
):
    """Solve a scenario and write the serving plan (JSON on stdout or -o; summary on stderr)."""
    from planner.optimize.orchestrate import solve as _solve
    from planner.scenario.loading import load_scenario

    finite("--budget", budget, minimum=0)
    finite("--carbon-cap", carbon_cap, minimum=0)
    finite("--time-limit", time_limit, positive=True)
    finite("--mip-gap", mip_gap, minimum=0)
    if mip_gap >= 1:
        raise InputError(f"--mip-gap must be below 1, got {mip_gap:g}")
    if threads is not None and threads < 1:
        raise InputError("--threads must be >= 1")
    if write_model is not None and write_model.suffix.lower() not in (".mps", ".lp"):
        raise InputError(f"--write-model: {write_model}: use a .mps or .lp suffix")
    if output is not None and str(output) == "-":
        output = None
    if not verify:
        given = [f for f, v in (("--trace", trace), ("--verify-minutes", verify_minutes),
                                ("--verify-iterations", verify_iterations != 5),
                                ("--verify-policy", verify_policy != PolicyOpt.fcfs), ("--verify-load", verify_load != 1.0))
                 if v]
        if given:
            raise InputError(f"{given[0]} needs --verify")
    if demand_statistic is not None and not re.fullmatch(DEMAND_STATISTIC_PATTERN, demand_statistic):
        raise InputError(f"--demand-statistic must be mean, peak or pNN with NN from 1 to 99, got {demand_statistic!r}")
    finite("--verify-minutes", verify_minutes, positive=True)
    finite("--verify-load", verify_load, positive=True)
    check_outputs({"-o": output, "--write-model": write_model})  # before loading: fail fast
    if example is not None:
        from planner.scenario.defaults import example_path

        if scenario is not None:
            raise InputError("give a SCENARIO or --example, not both")
        try:
            scenario = example_path(example)
        except ValueError as e:
            raise InputError(f"--example: {e}") from None
    sc = load_scenario(scenario, allow_dirs=allow_dir or ())
    if initial_fleet is not None:
        check_outputs({"-o": output, "--write-model": write_model}, [initial_fleet])
        from planner.plan.fleet import with_initial_fleet

        sc = with_initial_fleet(sc, initial_fleet)
    from planner.sim.arrivals import TraceSource, load_traces

    sources = [TraceSource.parse(t) for t in (trace or [])]
    check_outputs({"-o": output, "--write-model": write_model}, list(sc.input_files) + [t.path for t in sources])
    if sources:
        load_traces(sources, sc)  # every trace problem before the solve
    for w in sc.warnings:
        err.print(f"[yellow]warning:[/] {w}")
    progress = None
    live = None
    if err.is_terminal and not quiet:
        from rich.live import Live

        live = Live("", console=err, transient=True, refresh_per_second=4)

        def progress(d):
            inc = "-" if d["incumbent"] is None else f"{d['incumbent']:.6g}"
            bnd = "-" if d["bound"] is None else f"{d['bound']:.6g}"
            gap = "-" if d["gap"] is None else f"{100 * d['gap']:.2f}%"
            if "slots" in d:
                live.update(f"solving slot by slot: {d['slots_done']}/{d['slots']} done, objective so far {inc}  "
                            f"{d['elapsed']:.1f} s")
            else:
                live.update(f"solving: incumbent {inc}  bound {bnd}  gap {gap}  {d['elapsed']:.1f} s")

    try:
        if live is not None:
            live.start()
        plan = _solve(
            sc, objective.value if objective else None, backend.value, time_limit=time_limit, mip_gap=mip_gap,
            threads=threads, seed=seed, write_model=write_model, progress=progress, budget_usd=budget,
            carbon_cap_kg=carbon_cap, tie_break=tie_break.value if tie_break else None, decompose=not whole_model,
            demand_statistic=demand_statistic,
        )
    except InfeasibleError as e:
        if live is not None:
            live.stop()
        if explain:
            write_stdout(json.dumps(e.explanation.to_dict(), indent=1) + "\n")
        raise
    finally:
        if live is not None:
            live.stop()
    if verify:
        from planner.verify.loop import verify as _verify

        def round_note(r):
            if not quiet:
                err.print(f"verification round {r['iteration']}: {100 * r['attainment']:.2f} % of simulated requests met "
                          f"their SLOs (worst {esc(r['worst'])}: {100 * r['worst_attainment']:.2f} %); plan sized with "
                          f"{r['factors']} capacity factor(s); {r['simulate_seconds']:.0f} s simulated")

        plan = _verify(plan, sc, traces=sources or None, policy=verify_policy.value, minutes=verify_minutes,
                       load_scale=verify_load, max_iterations=verify_iterations, progress=round_note)
    emit_json(plan.to_json(), output)
    for w in plan.warnings:
        err.print(f"[yellow]warning:[/] {esc(w)}")
    if not quiet:
        from planner.plan.summary import print_summary

        print_summary(plan, err)
        if output is not None:
            err.print(f"plan written to {output}")
    if plan.status != "optimal":
        gap = "unknown" if plan.solver.gap is None else f"{100 * plan.solver.gap:.2f}%"
        if plan.solver.status.startswith("rolling horizon"):
            err.print(f"[yellow]note:[/] rolling horizon: the plan is within {gap} of the bound (the slots solved "
                      "without coupling, which leaves out startup costs); --whole-model solves it exactly")
        else:
            err.print(f"[yellow]note:[/] stopped at a limit; the best plan found has a gap of {gap} to the bound")


def show(
    plan_file: Path = typer.Argument(..., metavar="PLAN.json", help="A plan written by `plan solve`."),
    slot: Optional[int] = typer.Option(None, "--slot", help="Also list this slot's deployments and routing."),
):
    """Print a readable summary of a plan."""
    from planner.plan.checker import read_plan
    from planner.plan.summary import print_summary

    plan = read_plan(plan_file)
    if slot is not None and not (0 <= slot < len(plan.slots)):
        raise InputError(f"--slot must be between 0 and {len(plan.slots) - 1}")
    print_summary(plan, stdout_console(), slot)


def check(
    plan_file: Path = typer.Argument(..., metavar="PLAN.json"),
    scenario: Optional[Path] = typer.Option(None, "--scenario", "-s", help="Scenario the plan was made for (default: the one the plan records)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    allow_dir: Optional[list[Path]] = typer.Option(None, "--allow-dir", help=ALLOW_DIR_HELP),
):
    """Independently verify a plan against its scenario. Exit 0 if it holds, 1 if not."""
    from planner.plan.checker import check as _check
    from planner.plan.checker import read_plan

    plan = read_plan(plan_file)
    sc = _scenario_for_plan(plan, plan_file, scenario, allow_dir)
    rep = _check(plan_file, sc)
    if as_json:
        write_stdout(json.dumps(rep.to_dict(), indent=1) + "\n")
    else:
        stdout_console().print(rep.render())
    raise typer.Exit(EXIT_OK if rep.ok else EXIT_VIOLATIONS)


class PredictOpt(str, Enum):
    class_ = "class"
    oracle = "oracle"


class TraceRateOpt(str, Enum):
    plan = "plan"
    trace = "trace"


def simulate(
    plan_file: Path = typer.Argument(..., metavar="PLAN.json", help="A plan written by `plan solve`."),
    scenario: Optional[Path] = typer.Option(None, "--scenario", "-s", help="Scenario the plan was made for (default: the one the plan records)."),
    trace: Optional[list[str]] = typer.Option(None, "--trace", help="Replay this request trace (CSV: timestamp, input and output tokens, optional class and origin); PATH=CLASS,CLASS limits the classes its requests take. Repeatable. Default: Poisson arrivals at the planned rates."),
    policy: PolicyOpt = typer.Option(PolicyOpt.fcfs, "--policy", help="Queue order on every replica: fcfs, edf (TTFT deadline), srtf (shortest predicted service), llf (least laxity)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (arrivals, routing, replica choice)."),
    slots: Optional[str] = typer.Option(None, "--slots", help="Slots to simulate, e.g. 14 or 0-3,14 (default: all)."),
    load_scale: float = typer.Option(1.0, "--load-scale", help="Multiply every arrival rate by this."),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Simulate the first MINUTES of each slot (default: the whole slot)."),
    predict: PredictOpt = typer.Option(PredictOpt.class_, "--predict", help="Output lengths the policies assume: class (the class's shape) or oracle (the true ones)."),
    trace_rate: TraceRateOpt = typer.Option(TraceRateOpt.plan, "--trace-rate", help="plan: compress each trace to the planned rate of its classes; trace: keep its own rate."),
    interruptions: float = typer.Option(0.0, "--interruptions", help="Inject spot VM reclaims (seeded) at this multiple of the scenario's rates (spot_interruptions_per_hour; 1: as stated, 0: none); reclaimed replicas are down for spot_restart_s and their requests start again elsewhere."),
    late_starts: bool = typer.Option(False, "--late-starts", help="Replicas a slot's actions start serve only after their startup time (as if started at the slot's start, not ahead of it as planned)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the report as JSON here (atomically)."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON report instead of tables."),
    allow_violations: bool = typer.Option(False, "--allow-violations", help="Simulate a plan that fails `plan check` (with a warning) instead of refusing it."),
    allow_dir: Optional[list[Path]] = typer.Option(None, "--allow-dir", help=ALLOW_DIR_HELP),
):
    """Simulate a plan: replay traffic against its fleet (continuous batching, same performance model) and
    report latency percentiles, SLO attainment, energy, carbon, cost and fairness next to the plan's figures."""
    from planner.plan.checker import check as _check
    from planner.plan.checker import read_plan
    from planner.sim.orchestrate import simulate as _simulate
    from planner.sim.report import render_report

    finite("--load-scale", load_scale, positive=True)
    finite("--minutes", minutes, positive=True)
    finite("--interruptions", interruptions, minimum=0.0)
    if output is not None and str(output) == "-":
        output, as_json = None, True
    from planner.sim.arrivals import TraceSource

    sources = [TraceSource.parse(t) for t in (trace or [])]
    trace_files = [t.path for t in sources]
    check_outputs({"-o": output}, [plan_file, *trace_files])
    plan = read_plan(plan_file)
    sc = _scenario_for_plan(plan, plan_file, scenario, allow_dir)
    check_outputs({"-o": output}, [plan_file, *trace_files, *sc.input_files])
    rep_check = _check(plan, sc)
    if not rep_check.ok:
        n = len(rep_check.violations)
        msg = (f"the plan fails `plan check` ({n} violation{'s' if n != 1 else ''}, e.g. "
               f"{rep_check.violations[0].message[:200]})")
        if not allow_violations:
            raise InputError([Problem(str(plan_file), msg + "; pass --allow-violations to simulate it anyway")],
                             "plan fails the checker")
        err.print(f"[yellow]warning:[/] {esc(msg)}")
    rep = _simulate(plan, sc, traces=sources or None, policy=policy.value, seed=seed, slots=slots,
                    load_scale=load_scale, minutes=minutes, predict=predict.value, trace_rate=trace_rate.value,
                    interruptions=interruptions, late_starts=late_starts)
    text = rep.to_json()
    if output is not None:
        emit_json(text, output)
    if as_json:
        emit_json(text, None)
    else:
        stdout_console(soft_wrap=False, width=max(Console().width, 150)).print(render_report(rep))

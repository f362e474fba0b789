"""Hostile and careless input, through the real command line in a subprocess.

One table of cases. Each case prepares files in a fresh folder (a small valid scenario ``sc/`` and
a plan ``plan.json`` made from it are always there), runs one ``plan`` command, and states the exit
code, fragments the standard error must contain, fragments neither stream may contain (secrets),
and which files must be byte-for-byte unchanged. Nothing may print a traceback or a Python warning,
and every case must end within its time bound.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import yaml
from test_simulate import sim_doc

SECRET = "TOKEN-3f9a1c7e-do-not-print"


def plan_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("plan")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "planner.cli"]


@dataclass
class Case:
    args: list[str]
    code: int
    err: tuple[str, ...] = ()
    setup: Callable[[Path], None] | None = None
    unchanged: tuple[str, ...] = ("sc/scenario.yaml", "sc/demand.csv", "plan.json")
    absent: tuple[str, ...] = ()
    seconds: float = 60.0
    stdout_json: bool = False
    check: Callable[[Path, subprocess.CompletedProcess], None] | None = None
    env: dict = field(default_factory=dict)
    python: str | None = None
    """Run this Python code (``python -c``) instead of ``plan ARGS`` (library behaviour)."""


def _doc():
    """Llama 3.1 8B on H100s in one region, one origin, one class k, two slots (real model: simulable)."""
    return sim_doc(rate=20.0, slots=2)


def _write_sc(d: Path, doc: dict | None = None, demand_csv: str | None = None) -> None:
    """sc/scenario.yaml with the demand table in sc/demand.csv."""
    doc = dict(doc or _doc())
    rows = doc.pop("demand")
    text = "timestamp,class,origin,rate_rps\n" + "".join(
        f"{r['timestamp']},{r['class']},{r['origin']},{r['rate_rps']}\n" for r in rows)
    (d / "sc").mkdir(exist_ok=True)
    (d / "sc" / "demand.csv").write_text(demand_csv if demand_csv is not None else text)
    doc["demand"] = "demand.csv"
    (d / "sc" / "scenario.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def _edit_yaml(d: Path, fn) -> None:
    p = d / "sc" / "scenario.yaml"
    doc = yaml.safe_load(p.read_text())
    fn(doc)
    p.write_text(yaml.safe_dump(doc, sort_keys=False))


def _set(key, value):
    def f(d):
        _edit_yaml(d, lambda doc: doc.__setitem__(key, value))
    return f


def _carbon_value(v):
    def f(d):
        def g(doc):
            doc["carbon_intensity"][1]["gco2_per_kwh"] = v
        _edit_yaml(d, g)
    return f


def _max_rps(v):
    def f(d):
        def g(doc):
            for r in doc["profiles"]:
                r["max_rps"] = v
        _edit_yaml(d, g)
    return f


def _demand_csv(text):
    def f(d):
        (d / "sc" / "demand.csv").write_text(text)
    return f


def _secret_file(d: Path) -> Path:
    p = d / "secret.txt"
    p.write_text(SECRET + "\n")
    return p


def _symlink(name, target):
    def f(d):
        t = target(d) if callable(target) else target
        os.symlink(t, d / name)
    return f


def _fifo(d):
    os.mkfifo(d / "sc" / "pipe.csv")
    _edit_yaml(d, lambda doc: doc.__setitem__("carbon_intensity", "pipe.csv"))


def _deep_plan(d):
    (d / "deep.json").write_text("[" * 200_000 + "]" * 200_000)


def _bad_plan(d):
    """A plan whose stated carbon is twice the recomputed one: the checker flags it; the fleet is intact."""
    p = json.loads((d / "plan.json").read_text())
    p["totals"]["carbon_kg"] *= 2
    (d / "bad.json").write_text(json.dumps(p))


def _alias_bomb(d):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    doc = yaml.safe_load((d / "sc" / "scenario.yaml").read_text())
    text = "\n".join(lines) + "\n" + yaml.safe_dump(doc, sort_keys=False)
    text = text.replace("name: test", "name: test\nnotes: *a8", 1)
    (d / "sc" / "scenario.yaml").write_text(text)


def _duplicate_key(d):
    p = d / "sc" / "scenario.yaml"
    p.write_text(p.read_text() + "horizon:\n  start: '2024-01-01T00:00:00Z'\n  slot_minutes: 60\n  slots: 1\n")


def _other_scenario(d):
    shutil.copytree(d / "sc", d / "other")
    p = d / "other" / "demand.csv"
    p.write_text(p.read_text().replace(",20.0", ",21.0"))


def _plain_file_parent(d):
    (d / "afile").write_text("x")


def _has_warning(d, r):
    plan = json.loads(r.stdout)
    assert plan["warnings"] and "below 1e-06 req/s" in plan["warnings"][0]


def _link_kept(d, r):
    assert (d / "link.json").is_symlink() and json.loads((d / "target.json").read_text())["status"] == "optimal"


def _no_dash_file(d, r):
    assert not (d / "-").exists()
    json.loads(r.stdout)


REPEATED_SOLVES = """
import planner
sc = planner.load_scenario("sc/scenario.yaml")
for kw in (dict(threads=2, decompose=False), {}, dict(threads=2), dict(budget_usd=1e6), dict(threads=1), {}):
    plan = planner.solve(sc, "energy", **kw)
    assert planner.check(plan, sc).ok, kw
print("ok")
"""

TINY_DEMAND = ("timestamp,class,origin,rate_rps\n2024-01-01T00:00:00Z,k,o,8.0\n"
               "2024-01-01T01:00:00Z,k,o,0.00000001\n")
THREE_BAD_ROWS = ("timestamp,class,origin,rate_rps\n2024-01-01T00:00:00Z,k,o,abc\n"
                  "2024-01-01T01:00:00Z,k,o,-1\n2024-01-01T02:00:00Z,k,o,x\n2024-01-01T03:00:00Z,k,o,y\n")

CASES: dict[str, Case] = {
    # --- numerics and sizes
    "max_rps 1e-8 is 'cannot serve'": Case(["solve", "sc/scenario.yaml", "-q"], 3, ("less than 1e-06 req/s",),
                                           setup=_max_rps(1e-8)),
    "demand 1e-8 is reported, not dropped": Case(["solve", "sc/scenario.yaml", "-q"], 0, (),
                                                 setup=_demand_csv(TINY_DEMAND), check=_has_warning),
    "carbon 1e308": Case(["solve", "sc/scenario.yaml", "-q"], 2, ("gco2_per_kwh", "plausible maximum"),
                         setup=_carbon_value(1e308)),
    "GPU price 1e308": Case(["solve", "sc/scenario.yaml", "-q"], 2, ("price_usd_per_gpu_hour",),
                            setup=lambda d: _edit_yaml(d, lambda doc: doc["regions"][0]["gpus"][0].__setitem__(
                                "price_usd_per_gpu_hour", 1e308))),
    "budget far below any plan is refused fast": Case(["solve", "sc/scenario.yaml", "--budget", "0.01", "-q"], 3,
                                                      ("budget", "proven lower bound"), seconds=30),
    "time limit nan": Case(["solve", "sc/scenario.yaml", "--time-limit", "nan"], 2, ("--time-limit",)),
    "time limit inf": Case(["solve", "sc/scenario.yaml", "--time-limit", "inf"], 2, ("--time-limit",)),
    "mip gap 1.5": Case(["solve", "sc/scenario.yaml", "--mip-gap", "1.5"], 2, ("--mip-gap",)),
    "threads 0": Case(["solve", "sc/scenario.yaml", "--threads", "0"], 2, ("--threads",)),
    "model too large": Case(["solve", "sc/scenario.yaml", "-q"], 2, ("PLANNER_MAX_MODEL_NONZEROS",),
                            env={"PLANNER_MAX_MODEL_NONZEROS": "10"}),
    "bad limit variable": Case(["solve", "sc/scenario.yaml", "-q"], 2, ("PLANNER_MAX_FILE_MB",),
                               env={"PLANNER_MAX_FILE_MB": "lots"}),
    "file above the size limit": Case(["solve", "sc/scenario.yaml", "-q"], 2, ("MiB limit",),
                                      env={"PLANNER_MAX_FILE_MB": "0.0001"}),
    "simulate load scale 1000": Case(["simulate", "plan.json", "--load-scale", "1000"], 2,
                                     ("PLANNER_MAX_SIM_REQUESTS",), env={"PLANNER_MAX_SIM_REQUESTS": "100000"}),
    "simulate minutes nan": Case(["simulate", "plan.json", "--minutes", "nan"], 2, ("--minutes",)),
    "data carbon 1e8 hours": Case(["data", "carbon", "us=x.csv", "--start", "2023-01-01T00:00:00Z",
                                   "--hours", "100000000"], 2, ("--hours",)),
    "plan nested 200,000 deep": Case(["check", "deep.json", "--scenario", "sc/scenario.yaml"], 2,
                                     ("nested too deeply",), setup=_deep_plan),
    "YAML alias bomb": Case(["validate", "sc/scenario.yaml"], 2, ("expands to more than",), setup=_alias_bomb,
                            unchanged=(), seconds=30),
    "a second multi-slot solve after a threaded one": Case([], 0, python=REPEATED_SOLVES),
    "solve to stdout is the plan alone": Case(["solve", "sc/scenario.yaml"], 0, ("objective",), stdout_json=True),
    "--explain to stdout is JSON alone": Case(["solve", "sc/scenario.yaml", "--explain", "-q"], 3, ("infeasible",),
                                              stdout_json=True, setup=_demand_csv(
                                                  "timestamp,class,origin,rate_rps\n2024-01-01T00:00:00Z,k,o,5000\n"
                                                  "2024-01-01T01:00:00Z,k,o,8\n")),
    # --- nothing destroyed
    "-o onto the scenario": Case(["solve", "sc/scenario.yaml", "-q", "-o", "sc/scenario.yaml"], 2,
                                 ("input of this run",)),
    "-o onto a table": Case(["solve", "sc/scenario.yaml", "-q", "-o", "sc/demand.csv"], 2, ("input of this run",)),
    "-o onto a table through a link": Case(["solve", "sc/scenario.yaml", "-q", "-o", "link.csv"], 2,
                                           ("input of this run",),
                                           setup=_symlink("link.csv", lambda d: d / "sc" / "demand.csv")),
    "simulate -o onto the plan": Case(["simulate", "plan.json", "--minutes", "1", "-o", "plan.json"], 2,
                                      ("input of this run",)),
    "--write-model onto the scenario": Case(["solve", "sc/scenario.yaml", "--write-model", "sc/scenario.yaml"], 2,
                                            (".mps or .lp",)),
    "-o and --write-model on one file": Case(["solve", "sc/scenario.yaml", "-o", "m.lp", "--write-model", "m.lp"],
                                             2, ("is also the -o output",), absent=("m.lp",)),
    "-o /dev/stdout": Case(["solve", "sc/scenario.yaml", "-q", "-o", "/dev/stdout"], 2, ("use -o -",)),
    "-o a link to /dev/null": Case(["solve", "sc/scenario.yaml", "-q", "-o", "null.json"], 2, ("/dev",),
                                   setup=_symlink("null.json", "/dev/null")),
    "-o - is stdout": Case(["solve", "sc/scenario.yaml", "-q", "-o", "-"], 0, check=_no_dash_file),
    "-o through a link replaces its target": Case(["solve", "sc/scenario.yaml", "-q", "-o", "link.json"], 0,
                                                  setup=lambda d: ((d / "target.json").write_text("old"),
                                                                   os.symlink("target.json", d / "link.json")),
                                                  check=_link_kept),
    "-o into a missing folder": Case(["solve", "sc/scenario.yaml", "-q", "-o", "no/such/plan.json"], 2,
                                     ("does not exist",)),
    "-o under a plain file": Case(["solve", "sc/scenario.yaml", "-q", "-o", "afile/plan.json"], 2,
                                  ("afile",), setup=_plain_file_parent),
    "data demand -o onto its trace": Case(["data", "demand", "sc/demand.csv", "-o", "sc/demand.csv"], 2,
                                          ("input of this run",)),
    # --- confined, bounded reads; nothing echoed
    "table path /proc/self/environ": Case(["validate", "sc/scenario.yaml"], 2, ("absolute path",),
                                          setup=_set("carbon_intensity", "/proc/self/environ"),
                                          env={"PLANNER_TEST_SECRET": SECRET}),
    "table path climbing out": Case(["validate", "sc/scenario.yaml"], 2, ("outside the scenario's folder",),
                                    setup=lambda d: (_secret_file(d), _set("carbon_intensity", "../secret.txt")(d))),
    "table symlink pointing out": Case(["validate", "sc/scenario.yaml"], 2, ("outside the scenario's folder",),
                                       setup=lambda d: (_secret_file(d), os.symlink(d / "secret.txt",
                                                                                    d / "sc" / "c.csv"),
                                                        _set("carbon_intensity", "c.csv")(d))),
    "allowed folder": Case(["validate", "sc/scenario.yaml", "--allow-dir", "."], 2, ("not a carbon_intensity table",),
                           setup=lambda d: (_secret_file(d), _set("carbon_intensity", "../secret.txt")(d))),
    "table is /dev/zero via a link": Case(["validate", "sc/scenario.yaml"], 2, ("outside the scenario's folder",),
                                          setup=lambda d: (os.symlink("/dev/zero", d / "sc" / "z.csv"),
                                                           _set("carbon_intensity", "z.csv")(d)), seconds=20),
    "table is /dev/zero, /dev allowed": Case(["validate", "sc/scenario.yaml", "--allow-dir", "/dev"], 2, ("a device",),
                                          setup=lambda d: (os.symlink("/dev/zero", d / "sc" / "z.csv"),
                                                           _set("carbon_intensity", "z.csv")(d)), seconds=20),
    "table is /dev/urandom, /dev allowed": Case(["validate", "sc/scenario.yaml", "--allow-dir", "/dev"], 2,
                                                ("a device",), setup=_set("carbon_intensity", "/dev/urandom"),
                                                seconds=20),
    "table is a FIFO": Case(["validate", "sc/scenario.yaml"], 2, ("a FIFO",), setup=_fifo, seconds=20),
    "NUL byte in a table path": Case(["validate", "sc/scenario.yaml"], 2, ("NUL byte",),
                                     setup=_set("carbon_intensity", "c\x00.csv")),
    "table is a folder": Case(["validate", "sc/scenario.yaml"], 2, ("is a directory",),
                              setup=lambda d: ((d / "sc" / "dir.csv").mkdir(), _set("carbon_intensity", "dir.csv")(d))),
    "scenario is a FIFO": Case(["validate", "f.yaml"], 2, ("a FIFO",), setup=lambda d: os.mkfifo(d / "f.yaml"),
                               unchanged=(), seconds=20),
    # --- silent acceptance
    "YAML key given twice": Case(["validate", "sc/scenario.yaml"], 2, ("given twice",), setup=_duplicate_key,
                                 unchanged=()),
    "timestamp without offset": Case(["validate", "sc/scenario.yaml"], 2, ("no UTC offset",),
                                     setup=_demand_csv("timestamp,class,origin,rate_rps\n2024-01-01T00:00:00,k,o,8\n"
                                                       "2024-01-01T01:00:00,k,o,8\n"), unchanged=()),
    "every bad row listed": Case(["validate", "sc/scenario.yaml"], 2, ("line 2", "line 4", "line 5", "line 3"),
                                 setup=_demand_csv(THREE_BAD_ROWS), unchanged=()),
    "check uses the plan's scenario": Case(["check", "plan.json"], 0),
    "check against another scenario": Case(["check", "plan.json", "--scenario", "other/scenario.yaml"], 2,
                                           ("another scenario", "fingerprint"), setup=_other_scenario),
    "simulate refuses a plan failing check": Case(["simulate", "bad.json", "--minutes", "1"], 2,
                                                  ("fails `plan check`", "--allow-violations"), setup=_bad_plan),
    "simulate --allow-violations warns": Case(["simulate", "bad.json", "--minutes", "1", "--allow-violations"], 0,
                                              ("warning",), setup=_bad_plan),
    # --- existing classes of bad input
    "unknown region in a table": Case(["solve", "sc/scenario.yaml", "-q"], 2, ("unknown region",),
                                      setup=_carbon_value(100.0) if False else
                                      (lambda d: _edit_yaml(d, lambda doc: doc["carbon_intensity"][0].__setitem__(
                                          "region", "mars")))),
    "missing scenario": Case(["solve", "no/such.yaml"], 2, ("not found",), unchanged=()),
    "unknown option": Case(["solve", "--frobnicate"], 2, ("frobnicate",), unchanged=()),
}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The small valid scenario and its plan, made once."""
    d = tmp_path_factory.mktemp("base")
    _write_sc(d)
    r = subprocess.run(plan_cmd() + ["solve", "sc/scenario.yaml", "-q", "-o", "plan.json"], cwd=d,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return d


def _digest(p: Path) -> str | None:
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input(name, base, tmp_path):
    case = CASES[name]
    d = tmp_path / "w"
    shutil.copytree(base, d, symlinks=True)
    # the plan records where its scenario was; point it at this copy
    plan = json.loads((d / "plan.json").read_text())
    plan["scenario"]["source"] = str((d / "sc" / "scenario.yaml").resolve())
    (d / "plan.json").write_text(json.dumps(plan, indent=1) + "\n")
    if case.setup is not None:
        case.setup(d)
    before = {f: _digest(d / f) for f in case.unchanged}
    env = dict(os.environ, **case.env)
    env.pop("PLANNER_DEBUG", None)
    t0 = time.time()
    cmd = [sys.executable, "-c", case.python] if case.python is not None else plan_cmd() + case.args
    r = subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=case.seconds + 60,
                       env=env, stdin=subprocess.DEVNULL)
    took = time.time() - t0
    assert r.returncode == case.code, (r.returncode, r.stderr[-2000:])
    assert took < case.seconds, took
    for frag in case.err:
        assert frag in r.stderr, (frag, r.stderr[-2000:])
    for stream in (r.stdout, r.stderr):
        assert SECRET not in stream
        assert "Traceback" not in stream and "Warning:" not in stream and "RuntimeWarning" not in stream
        assert "internal error" not in stream
    for f, h in before.items():
        assert _digest(d / f) == h, f"{f} changed"
    for f in case.absent:
        assert not (d / f).exists(), f
    if r.returncode != 0:
        assert not [p.name for p in d.iterdir() if p.name.startswith(".") and p.is_file()], "temporary file left"
    if case.stdout_json:
        json.loads(r.stdout)  # nothing but the JSON document on stdout
        assert "Running HiGHS" not in r.stdout
    if case.check is not None:
        case.check(d, r)


def test_harness_covers_the_issue(tmp_path):
    """The table keeps its breadth (a case removed by accident shows here)."""
    assert len(CASES) >= 50

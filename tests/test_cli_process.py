"""The command line as users run it: a separate process, stdout read at the file-descriptor level,
signals sent to the process alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from builders import scenario


def plan_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("plan")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "planner.cli"]


def run(args, cwd, timeout=300, **kw):
    return subprocess.run(plan_cmd() + [str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, **kw)


@pytest.fixture()
def small(tmp_path):
    d = tmp_path / "sc"
    d.mkdir()
    (d / "scenario.yaml").write_text(yaml.safe_dump(scenario(demand={("k", "o"): [8.0, 12.0]}, slots=2)))
    return d / "scenario.yaml"


def test_solve_to_stdout_is_the_plan_and_checks(small, tmp_path):
    """`plan solve > p.json && plan check p.json` holds: stdout holds the plan alone (highspy's
    banner, written to file descriptor 1 by its C++ code, goes to stderr), and check finds the
    scenario the plan records."""
    r = run(["solve", small, "-q"], tmp_path)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["scenario"]["source"] == str(small.resolve())
    (tmp_path / "p.json").write_text(r.stdout)
    c = run(["check", "p.json"], tmp_path)
    assert c.returncode == 0, c.stdout + c.stderr
    assert "plan holds" in c.stdout


def test_explain_prints_json_only(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "scenario.yaml").write_text(yaml.safe_dump(scenario(demand={("k", "o"): [500.0]})))
    r = run(["solve", d / "scenario.yaml", "--explain", "-q"], tmp_path)
    assert r.returncode == 3, r.stderr
    exp = json.loads(r.stdout)
    assert exp["findings"] and "infeasible" in r.stderr


def test_dash_means_stdout_and_no_file_named_dash(small, tmp_path):
    r = run(["solve", small, "-q", "-o", "-"], tmp_path)
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)
    assert not (tmp_path / "-").exists()


def test_generate_and_version_print_nothing_stray(tmp_path):
    r = run(["generate", tmp_path / "g", "--regions", "1", "--slots", "1", "--gpus", "1", "--models", "1",
             "--classes", "1"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    v = run(["--version"], tmp_path)
    assert v.returncode == 0 and v.stdout.startswith("fleetplan ")


def test_broken_pipe_is_quiet(small, tmp_path):
    """stdout closed early (`plan solve | head -c 1`): exit 141, no traceback."""
    p = subprocess.Popen(plan_cmd() + ["solve", str(small), "-q"], cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_ends_the_solve_at_once_leaving_nothing(tmp_path, sig, code):
    """A long solve (the default scenario, about 40 s) ended by a signal to the process alone: it exits
    within seconds with the documented code, writes no plan, leaves no temporary file and no process
    (slot workers are threads of the process; nothing is forked)."""
    out = tmp_path / "plan.json"
    p = subprocess.Popen(plan_cmd() + ["solve", "-q", "-o", str(out), "--write-model", str(tmp_path / "m.mps")],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (tmp_path / "m.mps").exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.1)  # the model file is written just before solving starts
    time.sleep(2.0)
    assert p.poll() is None, p.communicate()
    kids_before = _children(p.pid)
    t0 = time.time()
    os.kill(p.pid, sig)
    rc = p.wait(timeout=30)
    took = time.time() - t0
    err = p.stderr.read()
    assert rc == code, err
    assert took < 10, took
    assert not out.exists()
    assert sorted(f.name for f in tmp_path.iterdir()) == ["m.mps"]
    assert kids_before == [] and _children(p.pid) == []
    assert "Traceback" not in err


def test_closed_stdout_still_writes_the_plan_file(small, tmp_path):
    """stdout closed before the run (`plan solve -o p.json >&-`): the plan is written, exit 0; nothing
    the solver prints can land in a file that took descriptor 1."""
    r = subprocess.run(plan_cmd() + ["solve", str(small), "-q", "-o", "p.json"], cwd=tmp_path, stdout=None,
                       stderr=subprocess.PIPE, text=True, timeout=120, close_fds=True,
                       preexec_fn=lambda: os.close(1))
    assert r.returncode == 0, r.stderr
    plan = json.loads((tmp_path / "p.json").read_text())
    assert plan["status"] == "optimal"

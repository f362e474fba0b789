"""Commands about scenarios: ``plan validate``, ``init``, ``generate`` and ``schema``."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from planner.cli.console import ALLOW_DIR_HELP, err, stdout_console
from planner.errors import InputError
from planner.io import atomic_write_text, write_stdout


class SchemaKind(str, Enum):
    scenario = "scenario"
    plan = "plan"


def validate(scenario: Optional[Path] = typer.Argument(None, help="Scenario file or folder (default: embedded)."),
             allow_dir: Optional[list[Path]] = typer.Option(None, "--allow-dir", help=ALLOW_DIR_HELP)):
    """Check a scenario without solving (exit 0 if valid, 2 with every problem listed if not)."""
    from planner.scenario.loading import load_scenario

    sc = load_scenario(scenario, allow_dirs=allow_dir or ())
    for w in sc.warnings:
        err.print(f"[yellow]warning:[/] {w}")
    out = stdout_console()
    out.print(f"valid: {sc.source}: {len(sc.regions)} regions, {len(sc.gpus)} GPU types, {len(sc.models)} models, "
              f"{len(sc.classes)} classes, {len(sc.origins)} origins, {sc.n_slots} slots of "
              f"{sc.spec.horizon.slot_minutes} min, {len(sc.profiles)} profile rows; fingerprint {sc.fingerprint[:16]}")


def init(
    directory: Path = typer.Argument(..., help="Folder to write the default scenario into."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
    example: str = typer.Option("default", "--example", metavar="NAME", help="The example to start from: default (one day) or week (7 days, VMs on demand and spot, the fleet over time); the folder holds both, which share their tables."),
):
    """Write the embedded default scenario (YAML + CSV tables) to DIRECTORY for editing."""
    from planner.scenario.defaults import EXAMPLES, default_scenario_dir

    if example not in EXAMPLES:
        raise InputError(f"--example: unknown example {example!r}; the embedded examples are {', '.join(EXAMPLES)}")
    src = default_scenario_dir()
    files = sorted(p for p in src.iterdir() if p.suffix in (".yaml", ".csv", ".md"))
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory}: exists and is not a folder")
    clash = [directory / p.name for p in files if (directory / p.name).exists()]
    if clash and not force:
        raise InputError(f"{clash[0]}: already exists (use --force to overwrite)")
    directory.mkdir(parents=True, exist_ok=True)
    for p in files:
        atomic_write_text(directory / p.name, p.read_text(encoding="utf-8"))
    err.print(f"wrote {len(files)} files to {directory}; try: plan solve {directory / EXAMPLES[example]}")


def generate(
    outdir: Path = typer.Argument(..., help="Folder for the synthetic scenario."),
    regions: int = typer.Option(4, "--regions", min=1),
    slots: int = typer.Option(24, "--slots", min=1),
    gpus: int = typer.Option(3, "--gpus", min=1),
    models: int = typer.Option(2, "--models", min=1),
    classes: int = typer.Option(4, "--classes", min=1),
    seed: int = typer.Option(0, "--seed"),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
):
    """Write a synthetic scenario of the given size, built from the default tables."""
    from planner.scenario.generate import generate_scenario

    path = generate_scenario(outdir, regions=regions, slots=slots, gpus=gpus, models=models, classes=classes,
                             seed=seed, force=force)
    err.print(f"wrote {path}")


def schema(kind: SchemaKind = typer.Argument(..., help="scenario or plan")):
    """Print the JSON Schema of the scenario document or of the plan file."""
    from planner.plan.schema import plan_json_schema
    from planner.scenario.schema import scenario_json_schema

    s = scenario_json_schema() if kind == SchemaKind.scenario else plan_json_schema()
    write_stdout(json.dumps(s, indent=1, sort_keys=True) + "\n")

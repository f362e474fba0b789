"""Location of the embedded default scenario (shipped as package data from the repo's ``data/``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def default_scenario_dir() -> Path:
    """Folder holding the default scenario's YAML document and CSV tables."""
    return Path(str(resources.files("planner_data") / "default"))


def default_scenario_path() -> Path:
    return default_scenario_dir() / "scenario.yaml"


EXAMPLES = {"default": "scenario.yaml", "week": "week.yaml"}
"""Embedded examples: name -> document in the default folder (they share its tables)."""


def example_path(name: str) -> Path:
    """The document of an embedded example; ValueError naming the examples for an unknown one."""
    if name not in EXAMPLES:
        raise ValueError(f"unknown example {name!r}; the embedded examples are {', '.join(EXAMPLES)}")
    return default_scenario_dir() / EXAMPLES[name]

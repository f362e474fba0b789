"""Scenarios: the input schema, loading and validation, time-series alignment, the embedded default and
the synthetic generator.

* :mod:`~planner.scenario.schema`: the document's pydantic models (``plan schema scenario``);
* :mod:`~planner.scenario.loading`: reading the document and its tables, every problem named, into a
  :class:`~planner.scenario.loading.Scenario` (arrays aligned to the planning slots);
* :mod:`~planner.scenario.timeseries`: aligning a time series to the slots;
* :mod:`~planner.scenario.defaults`: where the embedded default scenario lives;
* :mod:`~planner.scenario.generate`: synthetic scenarios of a given size from the default tables.
"""

from planner.scenario.loading import Scenario, load_scenario, scenario_from_dict
from planner.scenario.schema import (
    RATE_RESOLUTION,
    SCENARIO_SCHEMA_VERSION,
    GpuType,
    Horizon,
    Model,
    Name,
    Objective,
    Options,
    Origin,
    Region,
    RegionGpu,
    RequestClass,
    ScenarioSpec,
    Shape,
    Slo,
    Table,
    TieBreak,
    Unserved,
    scenario_json_schema,
)

__all__ = [
    "Scenario", "load_scenario", "scenario_from_dict", "RATE_RESOLUTION", "SCENARIO_SCHEMA_VERSION", "GpuType",
    "Horizon", "Model", "Name", "Objective", "Options", "Origin", "Region", "RegionGpu", "RequestClass",
    "ScenarioSpec", "Shape", "Slo", "Table", "TieBreak", "Unserved", "scenario_json_schema",
]

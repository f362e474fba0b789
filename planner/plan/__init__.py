"""Plans: the plan file's schema, the independent checker and the summary tables.

* :mod:`~planner.plan.schema`: the plan's pydantic models (``plan schema plan``), deterministic JSON;
* :mod:`~planner.plan.checker`: verifies a plan against its scenario from the plan file alone; it
  imports neither a solver nor :mod:`formulations`, so a bug in the model cannot hide itself there;
* :mod:`~planner.plan.summary`: the tables ``plan solve`` and ``plan show`` print.
"""

from planner.plan.checker import CheckReport, Violation, check, read_plan
from planner.plan.schema import (
    PLAN_SCHEMA_VERSION,
    TIMING_FIELDS,
    ClassLoad,
    Deployment,
    ObjectiveValue,
    Plan,
    PlanOptions,
    PruningInfo,
    Route,
    ScenarioRef,
    Slot,
    SlotTotals,
    SolverInfo,
    Target,
    Totals,
    UnservedRate,
    plan_json_schema,
)

__all__ = [
    "CheckReport", "Violation", "check", "read_plan", "PLAN_SCHEMA_VERSION", "TIMING_FIELDS", "ClassLoad",
    "Deployment", "ObjectiveValue", "Plan", "PlanOptions", "PruningInfo", "Route", "ScenarioRef", "Slot",
    "SlotTotals", "SolverInfo", "Target", "Totals", "UnservedRate", "plan_json_schema",
]

"""Reading and validating scenarios.

:func:`load_scenario` reads a YAML or JSON scenario document and its tables, checks every field,
reference and row, aligns every time series to the planning slots and returns a frozen
:class:`Scenario` with dense arrays indexed by the scenario's own orderings. Every problem found is
reported at once, each with its file and field or row, as a :class:`~planner.errors.ScenarioError`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import yaml
from pydantic import ValidationError

from planner.errors import InputError, Problem, ScenarioError
from planner.io import atomic_write_text, confine, parse_csv_strings, read_text_input, token, tokens
from planner.limits import expanded_size, limits
from planner.scenario.defaults import default_scenario_path
from planner.scenario.arrivals import ARRIVAL_COLUMNS, class_level, validate_arrivals
from planner.scenario.schema import STATISTICS, Options, ScenarioSpec
from planner.scenario.timeseries import align_series, table_step

PROFILE_COLUMNS = {
    "model": "str",
    "gpu": "str",
    "tp": "int",
    "pp": "int",
    "freq_mhz": "float",
    "shape": "str",
    "max_rps": "float",
    "ttft_ms": "float",
    "tbt_ms": "float",
    "busy_power_w": "float",
    "idle_power_w": "float",
    "active_power_w": "float?",
    "source": "str",
    "expected_error": "float?",
    "statistic": "str?",
    "service_ms": "float?",
}
"""Profile columns. ``source``, ``active_power_w``, ``expected_error``, ``statistic`` and ``service_ms`` may
be omitted or left empty. ``service_ms`` is the mean time one request of the row's shape spends on an
otherwise idle replica (prefill plus decode at batch 1): with bursty classes (``arrivals``) the planner
reads from it how long a lightly loaded replica keeps working per request (docs/formulation.md); empty:
``ttft_ms + (mean output - 1) x tbt_ms``, an upper bound.

``active_power_w`` (W per replica) is the power of one replica whose engine runs continuously with a
single sequence of the row's shape: the zero-load intercept of its power under continuous batching
(docs/profiles.md). Empty means ``idle_power_w``: the idle-to-busy line, which underestimates the
power of partly loaded replicas. ``expected_error`` is the relative error of an estimated row's
``max_rps`` (e.g. 0.25; empty for measured rows). ``statistic`` says what the row's latencies and
``max_rps`` are for: ``mean`` (empty or omitted: tables written before the column existed) or ``p50``,
``p90``, ``p95``, ``p99`` (the percentile over requests; the largest rate at which it meets the targets
the row was computed for). A class whose SLO states a ``percentile`` uses only rows at least as strict."""
CARBON_COLUMNS = {"timestamp": "time", "region": "str", "gco2_per_kwh": "float"}
DEMAND_COLUMNS = {"timestamp": "time", "class": "str", "origin": "str", "rate_rps": "float"}
PRICE_COLUMNS = {"timestamp": "time", "region": "str", "usd_per_mwh": "float"}
AVAIL_COLUMNS = {"timestamp": "time", "region": "str", "gpu": "str", "count": "int", "market": "str?"}
MARKETS = ("on-demand", "spot")
"""The markets a VM is rented on (``Deployment.market``, ``regions[].vms``)."""
OPTIONAL_COLUMNS = {"source"}
SHAPE_COLUMNS = {"input_tokens": "int", "output_tokens": "int", "weight": "float?", "quantile": "float?"}
"""Columns of a shape's ``distribution`` table (exactly one of ``weight`` and ``quantile``)."""
MAX_DISTRIBUTION_ROWS = 1_000_000

CEILINGS = {
    "tp": 1024, "pp": 1024, "freq_mhz": 1e5, "max_rps": 1e9, "ttft_ms": 1e8, "tbt_ms": 1e8,
    "busy_power_w": 1e7, "idle_power_w": 1e7, "active_power_w": 1e7, "expected_error": 100.0, "service_ms": 1e9,
    "gco2_per_kwh": 1e5, "rate_rps": 1e9, "usd_per_mwh": 1e6, "count": 10_000_000,
}
"""Largest plausible value per numeric column (far above any real one: the dirtiest grids emit about
1,500 gCO2/kWh). A value above it is refused with its row named: such values (1e308 and the like) are
typing errors, and they would push the MILP's coefficients past what a solver handles."""
PROFILE_KEY = ["model", "gpu", "tp", "pp", "freq_mhz", "shape"]


# --------------------------------------------------------------------------------------------
# the loaded scenario


@dataclass(frozen=True, eq=False)
class Scenario:
    """A validated scenario with every series aligned to the slots.

    Arrays are indexed by the orderings in ``regions``, ``gpus``, ``models``, ``shapes``,
    ``classes``, ``origins`` and slots ``t = 0..T-1``.
    """

    spec: ScenarioSpec
    source: str
    """Where the scenario came from (file path, or '<memory>')."""
    profiles: pd.DataFrame
    """Profile table, one row per (model, gpu, tp, pp, freq_mhz, shape), sorted by that key."""
    carbon: np.ndarray
    """[R, T] grid carbon intensity, gCO2eq/kWh."""
    elec_price: np.ndarray
    """[R, T] electricity price, USD/MWh (0 where the region is unpriced)."""
    elec_priced: np.ndarray
    """[R] whether the region has an electricity price."""
    availability: np.ndarray
    """[R, G] -> [R, G, T] GPUs available (0 where the GPU type is not offered)."""
    gpu_price: np.ndarray
    """[R, G] USD per GPU-hour (NaN where not offered)."""
    demand: np.ndarray
    """[K, O, T] request rate, req/s."""
    rtt: np.ndarray
    """[O, R] round-trip time in ms (NaN where no RTT is given)."""
    allowed: np.ndarray
    """[O, R] whether origin o may be served in region r (residency and RTT known)."""
    tables: dict[str, pd.DataFrame] = field(repr=False)
    """The normalised input tables (for the fingerprint and the checker)."""
    warnings: tuple[str, ...] = ()
    input_files: tuple[str, ...] = ()
    """Every file this scenario was read from (document and tables): outputs may not overwrite them."""
    base_dir: str | None = None
    """The folder table paths are relative to."""
    document: str | None = None
    """The scenario document's path (None for a scenario built in memory)."""
    vm_offers: pd.DataFrame | None = field(default=None, repr=False)
    """Every (region, VM type, market) offer when some region states ``vms`` (None otherwise): see
    :func:`_vm_offers`. Per-GPU offers then appear as flexible VMs of one GPU."""
    spot_restart_basis: dict | None = field(default=None, repr=False)
    """Seconds per model a reclaimed spot replica is down when its VM type states no ``spot_restart_s``
    (None: :meth:`startup_seconds`). Set by :meth:`without_scaling`, so that the same scenario without
    ``options.scaling`` keeps its spot losses."""

    # ---- convenient views
    @property
    def options(self) -> Options:
        return self.spec.options

    @cached_property
    def regions(self) -> list[str]:
        return [r.name for r in self.spec.regions]

    @cached_property
    def gpus(self) -> list[str]:
        return [g.name for g in self.spec.gpu_types]

    @cached_property
    def models(self) -> list[str]:
        return [m.name for m in self.spec.models]

    @cached_property
    def shapes(self) -> list[str]:
        return [s.name for s in self.spec.shapes]

    @cached_property
    def classes(self) -> list[str]:
        return [k.name for k in self.spec.classes]

    @cached_property
    def origins(self) -> list[str]:
        return [o.name for o in self.spec.origins]

    @property
    def n_slots(self) -> int:
        return self.spec.horizon.slots

    @property
    def slot_hours(self) -> float:
        return self.spec.horizon.slot_minutes / 60.0

    @property
    def slot_seconds(self) -> float:
        return self.spec.horizon.slot_minutes * 60.0

    @cached_property
    def slot_starts(self) -> list[datetime]:
        h = self.spec.horizon
        return [h.start + timedelta(minutes=h.slot_minutes * t) for t in range(h.slots)]

    @cached_property
    def pue(self) -> np.ndarray:
        return np.array([r.pue for r in self.spec.regions], dtype=float)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the scenario's content: the document (options excluded) and its tables."""
        h = hashlib.sha256()
        doc = self.spec.model_dump(mode="json", exclude={"options"})
        for key in ("profiles", "carbon_intensity", "demand", "electricity_price", "availability"):
            doc.pop(key, None)
        # fields added after schema 1's first release count only when set (older scenarios keep their
        # fingerprints); a shape's distribution counts by its content (a table below), not its path
        for shp in doc.get("shapes", []):
            shp.pop("distribution", None)
        for cls in doc.get("classes", []):
            cls.pop("arrivals", None)     # counted by content (a table below)
            for fld in ("attainment", "percentile"):
                if cls.get("slo", {}).get(fld) is None:
                    cls.get("slo", {}).pop(fld, None)
            if not cls.get("spot"):
                cls.pop("spot", None)
                if not cls.get("on_demand_floor"):
                    cls.pop("on_demand_floor", None)
        for m in doc.get("models", []):
            if not m.get("pipeline_across_vms"):
                m.pop("pipeline_across_vms", None)
        for r in doc.get("regions", []):
            if not r.get("vms"):
                r.pop("vms", None)
        h.update(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
        for name in sorted(self.tables):
            h.update(f"\n#{name}\n".encode())
            # a distribution's weights are normalised on reading: hashed to 10 digits, so the table
            # written by save() (already normalised) reads back to the same fingerprint
            fmt = "%.10g" if name.startswith(("shape:", "arrivals:")) else None
            table = self.tables[name]
            if name == "profiles" and (table["statistic"] == "mean").all():
                table = table.drop(columns="statistic")     # tables from before the column keep their hash
            if name == "profiles" and "service_ms" in table and table["service_ms"].isna().all():
                table = table.drop(columns="service_ms")    # likewise
            h.update(table.to_csv(index=False, lineterminator="\n", float_format=fmt).encode())
        return h.hexdigest()

    def with_options(self, **overrides: Any) -> "Scenario":
        """A copy with some options replaced; ``None`` values are ignored (unset command-line flags)."""
        return self.replace_options(**{k: v for k, v in overrides.items() if v is not None})

    def with_tables(self, **tables: Any) -> "Scenario":
        """A copy with some tables replaced, validated like a loaded scenario.

        Keyword names: ``profiles``, ``carbon_intensity``, ``demand``, ``electricity_price``,
        ``availability``; values: a pandas DataFrame or a list of row mappings with the table's
        columns (timestamps as ISO 8601 text with an offset, or timezone-aware / UTC datetimes). The
        other tables are taken from this scenario as loaded (nothing is read from disk again), and
        options are kept. Raises :class:`~planner.errors.ScenarioError` naming every bad row.
        """
        unknown = sorted(set(tables) - set(TABLE_FIELDS))
        if unknown:
            raise ScenarioError([Problem(n, "not a table of the scenario (expected one of "
                                         f"{', '.join(TABLE_FIELDS)})") for n in unknown], "invalid table")
        doc = self.spec.model_dump(mode="json")
        for name in TABLE_FIELDS:
            if name in tables:
                doc[name] = None if tables[name] is None else _table_rows(name, tables[name])
            elif name in self.tables:
                doc[name] = _table_rows(name, self.tables[name])
            else:
                doc[name] = None
        for name in ("electricity_price", "availability"):
            if doc.get(name) is None:
                doc.pop(name, None)
        return scenario_from_dict(doc, base_dir=self.base_dir, source=self.source)

    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        """Write this scenario as ``scenario.yaml`` plus one CSV per table into ``directory``.

        ``plan solve DIRECTORY`` (and :func:`load_scenario`) read it back to the same fingerprint,
        options included. Existing files are refused unless ``overwrite``; every file is written
        atomically. Returns the document's path."""
        d = Path(directory)
        if d.exists() and not d.is_dir():
            raise ScenarioError([Problem(str(d), "exists and is not a folder")], "cannot save scenario")
        shape_files = _unique_files([shape_file(s.name) for s in self.spec.shapes])
        arrival_files = _unique_files([arrivals_file(k.name) for k in self.spec.classes])
        names = ["scenario.yaml"] + [TABLE_FILES[n] for n in TABLE_FIELDS if n in self.tables] + [
            shape_files[i] for i, s in enumerate(self.spec.shapes)
            if self.shape_distribution(s.name) is not None] + [
            arrival_files[i] for i, k in enumerate(self.spec.classes) if self.class_arrivals(k.name) is not None]
        clash = [d / n for n in names if (d / n).exists()]
        if clash and not overwrite:
            raise ScenarioError([Problem(str(clash[0]), "already exists (pass overwrite=True)")], "cannot save scenario")
        d.mkdir(parents=True, exist_ok=True)
        doc = self.spec.model_dump(mode="json", exclude_none=True)
        for name in TABLE_FIELDS:
            doc.pop(name, None)
            if name in self.tables:
                doc[name] = TABLE_FILES[name]
                df = pd.DataFrame(_table_rows(name, self.tables[name]))
                atomic_write_text(d / TABLE_FILES[name], df.to_csv(index=False, lineterminator="\n"))
        for i, shp in enumerate(self.spec.shapes):
            dist = self.shape_distribution(shp.name)
            if dist is not None:
                fname = shape_files[i]
                doc["shapes"][i]["distribution"] = fname
                atomic_write_text(d / fname, dist.to_csv(index=False, lineterminator="\n"))
        for i, kc in enumerate(self.spec.classes):
            arr = self.class_arrivals(kc.name)
            if arr is not None:
                fname = arrival_files[i]
                doc["classes"][i]["arrivals"] = fname
                atomic_write_text(d / fname, arr.to_csv(index=False, lineterminator="\n", float_format="%.10g"))
        path = d / "scenario.yaml"
        atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        return path

    def replace_options(self, **updates: Any) -> "Scenario":
        """A copy with the given options set, ``None`` included (e.g. ``budget_usd=None`` drops the budget)."""
        if not updates:
            return self
        merged = self.spec.options.model_dump() | updates
        try:
            opts = Options.model_validate(merged)
        except ValidationError as e:
            raise ScenarioError(_pydantic_problems(e, "options"), "invalid option") from None
        spec = self.spec.model_copy(update={"options": opts})
        problems = capacity_factor_problems(spec) + scaling_problems(spec)
        if problems:
            raise ScenarioError(problems, "invalid option")
        if opts.demand_statistic != self.spec.options.demand_statistic and "demand" in self.tables:
            return Scenario(**_replace(self, spec=spec, demand=_aligned_demand(self, opts.demand_statistic)))
        return Scenario(**_replace(self, spec=spec))

    def shape_distribution(self, shape: str) -> pd.DataFrame | None:
        """The shape's (input_tokens, output_tokens, weight) distribution (weights sum to 1), or None when
        the shape is a point."""
        return self.tables.get(f"shape:{shape}")

    def class_arrivals(self, name: str) -> pd.DataFrame | None:
        """The class's arrivals table as used (window_requests, weighting, quantile, ratio: the
        request-weighted rows at the class's level and the time-weighted rows), or None when its
        arrivals are taken as Poisson."""
        return self.tables.get(f"arrivals:{name}")

    @cached_property
    def burst(self) -> np.ndarray:
        """[K, T] burst factor of every class in every slot (1: Poisson or no demand); see
        :mod:`planner.scenario.arrivals`."""
        from planner.scenario.arrivals import burst_factors

        return burst_factors(self)

    def busy_share(self, name: str, m, window_requests) -> np.ndarray:
        """Share of time a replica holding ``m`` requests of class ``name`` on average has work, under the
        class's rate fluctuations (:func:`planner.scenario.arrivals.busy_share`)."""
        from planner.scenario.arrivals import busy_share

        return busy_share(self.class_arrivals(name), m, window_requests)

    def spot_restart_seconds(self, model: str) -> float:
        """Seconds a reclaimed spot replica of ``model`` is down when its VM type states no
        ``spot_restart_s``: its startup time (``spot_restart_basis`` when set)."""
        if self.spot_restart_basis is not None:
            return float(self.spot_restart_basis.get(model, 0.0))
        return self.startup_seconds(model)

    def without_scaling(self) -> "Scenario":
        """The same scenario without ``options.scaling`` (every slot sized on its own), keeping what
        scaling sets besides coupling: the time a reclaimed spot replica is down. Its optimum is a lower
        bound of this scenario's (coupling only adds rules and startup costs)."""
        if self.spec.options.scaling is None:
            return self
        basis = {m: self.spot_restart_seconds(m) for m in self.models}
        return Scenario(**(_replace(self.replace_options(scaling=None)) | {"spot_restart_basis": basis}))

    def startup_seconds(self, model: str) -> float:
        """Seconds a new replica of ``model`` takes before it serves (``options.scaling``; 0 without):
        :func:`startup_seconds`."""
        return startup_seconds(self.spec, model)

    @property
    def bursty(self) -> bool:
        """Some class states arrivals: the power model then counts the time replicas have no work
        (docs/formulation.md, "Power of a deployment"; ``constraints.activity_power``)."""
        return any(n.startswith("arrivals:") for n in self.tables)

    def capacity_factor_table(self) -> pd.DataFrame:
        """``options.capacity_factors`` as a frame: model, gpu, tp, pp, freq_mhz, k (class index), factor."""
        kix = {n: i for i, n in enumerate(self.classes)}
        rows = [(f.model, f.gpu, int(f.tp), int(f.pp), float(f.freq_mhz), kix[f.class_], float(f.factor))
                for f in self.spec.options.capacity_factors]
        return pd.DataFrame(rows, columns=["model", "gpu", "tp", "pp", "freq_mhz", "k", "factor"]).astype(
            {"tp": np.int64, "pp": np.int64, "freq_mhz": float, "k": np.int64, "factor": float})


TABLE_FIELDS = {"profiles": PROFILE_COLUMNS, "carbon_intensity": CARBON_COLUMNS, "demand": DEMAND_COLUMNS,
                "electricity_price": PRICE_COLUMNS, "availability": AVAIL_COLUMNS}
"""The scenario's tables and their columns."""

TABLE_FILES = {"profiles": "profiles.csv", "carbon_intensity": "carbon.csv", "demand": "demand.csv",
               "electricity_price": "electricity_price.csv", "availability": "availability.csv"}
"""File names :meth:`Scenario.save` gives the tables."""


def _table_rows(name: str, value) -> list[dict]:
    """A table given as a DataFrame or a list of row mappings, as rows of strings (inline form)."""
    if isinstance(value, pd.DataFrame):
        df = value
    elif isinstance(value, (list, tuple)):
        return [dict(r) if isinstance(r, dict) else r for r in value]
    else:
        raise ScenarioError([Problem(name, f"expected a pandas DataFrame or a list of rows, got "
                                           f"{type(value).__name__}")], "invalid table")
    df = df.copy()
    for col in df.columns:
        if pd.api.types.is_datetime64_any_dtype(df[col]):
            ts = df[col]
            if getattr(ts.dt, "tz", None) is not None:
                ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
            df[col] = ts.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").str.replace(".000000Z", "Z", regex=False)
    rows = df.to_dict(orient="records")
    out = []
    for r in rows:
        out.append({str(k): ("" if (isinstance(v, float) and np.isnan(v)) or v is None else
                             (repr(float(v)) if isinstance(v, (float, np.floating)) else str(v)))
                    for k, v in r.items()})
    return out


def _replace(s: Scenario, **kw) -> dict:
    d = {f: getattr(s, f) for f in Scenario.__dataclass_fields__}
    d.update(kw)
    return d


# --------------------------------------------------------------------------------------------
# reading


def _pydantic_problems(e: ValidationError, where: str) -> list[Problem]:
    out = []
    for err in e.errors():
        loc = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in err["loc"]).replace(".[", "[")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        out.append(Problem(f"{where}: {loc}" if loc else where, msg))
    return out


SCENARIO_FILES = ("scenario.yaml", "scenario.yml", "scenario.json")
"""The names a scenario document may have inside a scenario folder, in order of preference."""


def scenario_document_path(path: str | Path | None) -> Path:
    """The scenario document a path means: the embedded default for None, a folder's scenario file
    (:data:`SCENARIO_FILES`), else the path itself."""
    if path is None:
        return default_scenario_path()
    path = Path(path)
    if path.is_dir():
        for name in SCENARIO_FILES:
            if (path / name).exists():
                return path / name
    return path


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML would keep the last)."""


def _construct_mapping(loader, node, deep=False):
    loader.flatten_mapping(node)
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            continue  # the base constructor reports unhashable keys
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {str(key)[:40]!r} is given twice (first on line {seen[key] + 1})",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_document(text: str, where: str, json_only: bool = False) -> object:
    """A YAML or JSON document, with duplicate keys, alias bombs and absurd nesting refused."""
    try:
        if json_only:
            doc = json.loads(text)
        else:
            doc = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except json.JSONDecodeError as e:
        raise ScenarioError([Problem(f"{where}: line {e.lineno}", f"malformed JSON: {e.msg}")]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        loc = f"{where}: line {mark.line + 1}" if mark else where
        raise ScenarioError([Problem(loc, f"malformed YAML: {getattr(e, 'problem', None) or e}")]) from None
    except RecursionError:
        raise ScenarioError([Problem(where, "the document is nested too deeply")]) from None
    check_document_size(doc, where)
    return doc


def check_document_size(doc, where: str) -> None:
    """Refuse a document with more than PLANNER_MAX_DOCUMENT_NODES values once YAML aliases are
    expanded (an alias bomb), or nested too deeply to walk."""
    lim = limits().max_document_nodes
    try:
        n = expanded_size(doc, lim)
    except RecursionError:
        raise ScenarioError([Problem(where, "the document is nested too deeply")]) from None
    if n > lim:
        raise ScenarioError([Problem(where, f"the document expands to more than {lim:,} values (YAML aliases "
                                            "repeat content); raise PLANNER_MAX_DOCUMENT_NODES if it is real")])


def _read_document(path: Path) -> dict:
    where = str(path)
    if path.is_dir():
        raise ScenarioError([Problem(where, "directory has no scenario.yaml or scenario.json")])
    try:
        text = read_text_input(path, "scenario file")
    except InputError as e:
        raise ScenarioError(e.problems) from None
    doc = parse_document(text, where, json_only=path.suffix.lower() == ".json")
    if not isinstance(doc, dict):
        raise ScenarioError([Problem(where, "the document must be a mapping of scenario fields")])
    return doc


def load_scenario(path: str | Path | None = None, *, allow_dirs: Iterable[str | Path] = (),
                  **option_overrides: Any) -> Scenario:
    """Read and validate a scenario file (YAML or JSON), or the embedded default when ``path`` is None.

    Table paths must lie inside the document's folder; ``allow_dirs`` names further folders they may
    be read from (absolute paths or ``..`` included). Keyword arguments override the scenario's
    options (e.g. ``objective="cost"``, ``budget_usd=5e4``). Raises
    :class:`~planner.errors.ScenarioError` listing every problem found.
    """
    path = scenario_document_path(path)
    doc = _read_document(path)
    sc = scenario_from_dict(doc, base_dir=path.parent, source=str(path), allow_dirs=allow_dirs,
                            _document=str(path))
    return sc.with_options(**option_overrides)


def _validate_spec(doc: dict, source: str) -> ScenarioSpec:
    try:
        return ScenarioSpec.model_validate(doc)
    except ValidationError as e:
        raise ScenarioError(_pydantic_problems(e, source)) from None


def read_spec(path: str | Path | None = None) -> tuple[ScenarioSpec, Path]:
    """The validated scenario document without reading its tables, and the folder its table paths are
    relative to (for tools that build those tables, such as ``plan profile estimate``)."""
    path = scenario_document_path(path)
    return _validate_spec(_read_document(path), str(path)), path.parent


def scenario_from_dict(doc: dict, base_dir: str | Path | None = None, source: str = "<memory>", *,
                       allow_dirs: Iterable[str | Path] = (), _document: str | None = None) -> Scenario:
    """Validate a scenario given as a dict (tables inline or as CSV paths relative to ``base_dir``,
    default the working directory; ``allow_dirs``: further folders table paths may point into)."""
    if _document is None:  # a document read from a file was checked when it was parsed
        check_document_size(doc, source)
    spec = _validate_spec(doc, source)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    return _resolve(spec, base, source, tuple(Path(d) for d in allow_dirs), _document)


class _Reader:
    """Reads one table (CSV path or inline rows), collecting problems with file and line."""

    def __init__(self, base_dir: Path, source: str, problems: list[Problem], allow_dirs: tuple[Path, ...] = ()):
        self.base_dir = base_dir
        self.source = source
        self.problems = problems
        self.allow_dirs = allow_dirs
        self.files: list[str] = []

    def read(self, field_name: str, value, columns: dict[str, str]) -> tuple[pd.DataFrame | None, str, Any]:
        """Return (frame, where, rowlabel) with typed columns; None if unreadable."""
        if isinstance(value, str):
            try:
                p = confine(value, self.base_dir, self.allow_dirs)
            except InputError as e:
                self.problems.extend(Problem(f"{self.source}: {field_name}", q.message) for q in e.problems)
                return None, str(value), None
            where = str(p)
            if not p.exists():
                self.problems.append(Problem(f"{self.source}: {field_name}", f"table file not found: {p}"))
                return None, where, None
            try:
                text = read_text_input(p, "table file")
                self.files.append(str(p))
                df = parse_csv_strings(text, where)
            except InputError as e:
                self.problems.extend(e.problems)
                return None, where, None
            rowlabel = lambda i: f"{where}: line {i + 2}"  # noqa: E731 - header is line 1
        else:
            where = f"{self.source}: {field_name}"
            if not value:
                self.problems.append(Problem(where, "table is empty"))
                return None, where, None
            bad = [i for i, r in enumerate(value) if not isinstance(r, dict)]
            if bad:
                self.problems.append(Problem(f"{where}[{bad[0]}]", "each row must be a mapping"))
                return None, where, None
            # a key some rows leave out is an empty value there (optional columns)
            df = pd.DataFrame([{k: ("" if v is None else str(v)) for k, v in r.items()} for r in value]).fillna("")
            rowlabel = lambda i: f"{where}[{i}]"  # noqa: E731
        df.columns = [str(c).strip() for c in df.columns]
        optional = OPTIONAL_COLUMNS | {c for c, k in columns.items() if k.endswith("?")}
        missing = [c for c in columns if c not in df.columns and c not in optional]
        unknown = [c for c in df.columns if c not in columns and c not in optional]
        if not any(c in columns for c in df.columns):
            # nothing of the header is a column of this table: the file is not one (its content, which may be
            # anything, is not quoted)
            self.problems.append(Problem(where, f"not a {field_name} table: its header has none of the columns "
                                                f"{', '.join(columns)}"))
            return None, where, None
        if missing:
            self.problems.append(Problem(where, f"missing column(s): {', '.join(missing)}"))
        if unknown:
            self.problems.append(
                Problem(where, f"unknown column(s): {tokens(unknown, 5)} (expected {', '.join(columns)})")
            )
        if missing or unknown:
            return None, where, None
        if df.empty:
            self.problems.append(Problem(where, "table has no rows"))
            return None, where, None
        out = {}
        ok = True
        for col, kind in columns.items():
            nullable = kind.endswith("?")
            kind = kind.rstrip("?")
            if col not in df.columns:
                num = nullable and kind != "str"
                out[col] = pd.Series([np.nan if num else ""] * len(df), dtype=float if num else object)
                continue
            s = df[col].astype(str).str.strip()
            empty = s == ""
            if nullable and kind != "str":
                s = s.where(~empty, "nan")
            elif not nullable and (kind != "str" or col != "source"):
                if empty.any():
                    row_problems(self.problems, rowlabel, empty.to_numpy(), lambda i: f"{col}: empty value")
                    ok = False
                    continue
            if kind == "str":
                out[col] = s
            elif kind in ("float", "int"):
                num = pd.to_numeric(s, errors="coerce")
                bad = num.isna().to_numpy() | ~np.isfinite(num.to_numpy(dtype=float, na_value=np.nan))
                if nullable:
                    bad = bad & ~empty.to_numpy()
                vals = num.to_numpy(dtype=float, na_value=np.nan)
                col_ok = True
                if bad.any():
                    row_problems(self.problems, rowlabel, bad,
                                 lambda i: f"{col}: not a finite number: {token(s.iloc[i], 24)}")
                    col_ok = False
                fin = np.isfinite(vals)
                if kind == "int":
                    nonint = fin & (vals != np.round(np.where(fin, vals, 0.0)))
                    if nonint.any():
                        row_problems(self.problems, rowlabel, nonint,
                                     lambda i: f"{col}: not a whole number: {token(s.iloc[i], 24)}")
                        col_ok = False
                neg = fin & (vals < 0)
                if neg.any():
                    row_problems(self.problems, rowlabel, neg, lambda i: f"{col}: negative value {token(s.iloc[i], 24)}")
                    col_ok = False
                ceil = CEILINGS.get(col)
                high = fin & (vals > ceil) if ceil is not None else np.zeros(len(vals), bool)
                if high.any():
                    row_problems(self.problems, rowlabel, high,
                                 lambda i: f"{col}: {token(s.iloc[i], 24)} is above the plausible maximum {ceil:g}")
                    col_ok = False
                if not col_ok:
                    ok = False
                    continue
                if kind == "int":
                    vals = vals.astype(np.int64)
                out[col] = pd.Series(vals)
            elif kind == "time":
                ts = pd.to_datetime(s, errors="coerce", utc=True, format="ISO8601")
                bad = ts.isna().to_numpy()
                if bad.any():
                    row_problems(self.problems, rowlabel, bad,
                                 lambda i: f"{col}: not an ISO 8601 timestamp: {token(s.iloc[i], 32)}")
                    ok = False
                    continue
                naive = ~s.str.contains(_OFFSET_RE).to_numpy()
                if naive.any():
                    row_problems(self.problems, rowlabel, naive,
                                 lambda i: f"{col}: {token(s.iloc[i], 32)} has no UTC offset (write it as "
                                           "2023-06-15T00:00:00Z or with +HH:MM)")
                    ok = False
                    continue
                out[col] = pd.Series(ts.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]"))
        if not ok:
            return None, where, None
        frame = pd.DataFrame(out)
        frame.index = range(len(frame))
        return frame, where, rowlabel


_OFFSET_RE = r"[T ]\d{2}(?::?\d{2}){0,2}(?:[.,]\d+)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$"
"""A timestamp's time of day followed by an explicit UTC offset: ``Z`` or ``+HH:MM`` / ``-HHMM`` /
``+HH`` (a date alone has no offset)."""

MAX_ROWS_LISTED = 20
"""Bad rows listed per column and problem; the rest are counted."""


def row_problems(problems: list[Problem], rowlabel, mask: np.ndarray, message) -> None:
    """One problem per bad row (``mask``), up to :data:`MAX_ROWS_LISTED`, then a count of the rest."""
    idx = np.nonzero(np.asarray(mask))[0]
    for i in idx[:MAX_ROWS_LISTED]:
        problems.append(Problem(rowlabel(int(i)), message(int(i))))
    if len(idx) > MAX_ROWS_LISTED:
        first = rowlabel(int(idx[MAX_ROWS_LISTED]))
        problems.append(Problem(first, f"... and {len(idx) - MAX_ROWS_LISTED} more rows with the same problem"))


def _check_unique(names: list[str], where: str, problems: list[Problem]) -> None:
    seen = set()
    for i, n in enumerate(names):
        if n in seen:
            problems.append(Problem(f"{where}[{i}].name", f"duplicate name {n!r}"))
        seen.add(n)


def _shape_distribution(reader: "_Reader", field_name: str, value, problems: list[Problem]) -> pd.DataFrame | None:
    """A shape's distribution table, normalised: unique (input_tokens, output_tokens) pairs, sorted, with
    weights summing to 1."""
    frame, where, label = reader.read(field_name, value, SHAPE_COLUMNS)
    if frame is None:
        return None
    has_w, has_q = frame["weight"].notna(), frame["quantile"].notna()
    if has_w.any() == has_q.any():
        problems.append(Problem(where, "give exactly one of the columns weight (pairs with weights) and quantile "
                                       "(pairs at quantile levels)"))
        return None
    col = "weight" if has_w.any() else "quantile"
    vals = frame[col].to_numpy(float)
    missing = ~np.isfinite(vals)
    if missing.any():
        row_problems(problems, label, missing, lambda i: f"{col}: empty value")
        return None
    low = (frame["input_tokens"] < 1).to_numpy() | (frame["output_tokens"] < 1).to_numpy()
    if low.any():
        row_problems(problems, label, low, lambda i: "input_tokens and output_tokens must be at least 1")
        return None
    if len(frame) > MAX_DISTRIBUTION_ROWS:
        problems.append(Problem(where, f"{len(frame):,} rows, above the limit of {MAX_DISTRIBUTION_ROWS:,}"))
        return None
    if col == "quantile":
        bad = (vals <= 0) | (vals > 1) | np.r_[False, np.diff(vals) <= 0]
        if bad.any():
            row_problems(problems, label, bad, lambda i: "quantile: levels must increase strictly within (0, 1]")
            return None
        if vals[-1] != 1.0:
            problems.append(Problem(label(len(vals) - 1), "quantile: the last level must be 1"))
            return None
        w = np.diff(np.r_[0.0, vals])
    else:
        w = vals
        if (w < 0).any() or w.sum() <= 0:
            problems.append(Problem(where, "weight: weights must be non-negative with a positive sum"))
            return None
    out = pd.DataFrame({"input_tokens": frame["input_tokens"].to_numpy(np.int64),
                        "output_tokens": frame["output_tokens"].to_numpy(np.int64), "weight": w})
    out = out[out["weight"] > 0].groupby(["input_tokens", "output_tokens"], as_index=False, sort=True)["weight"].sum()
    out["weight"] = out["weight"] / out["weight"].sum()
    return out.reset_index(drop=True)


def read_shape_distributions(spec: ScenarioSpec, base_dir: str | Path, source: str = "<memory>",
                             allow_dirs: Iterable[str | Path] = ()) -> dict[str, pd.DataFrame]:
    """shape -> its normalised (input_tokens, output_tokens, weight) table, for the shapes of ``spec``
    that have a ``distribution`` (read relative to ``base_dir`` like a loaded scenario's). Raises
    ScenarioError naming every bad file, row or column."""
    problems: list[Problem] = []
    out = _read_distributions(_Reader(Path(base_dir), source, problems, tuple(Path(d) for d in allow_dirs)),
                              spec, problems)
    if problems:
        raise ScenarioError(problems)
    return out


def _read_distributions(reader: "_Reader", spec: ScenarioSpec, problems: list[Problem]) -> dict[str, pd.DataFrame]:
    """The shapes' distribution tables that read without problems (the others add to ``problems``)."""
    out = {}
    for i, shp in enumerate(spec.shapes):
        if shp.distribution is not None:
            dist = _shape_distribution(reader, f"shapes[{i}].distribution", shp.distribution, problems)
            if dist is not None:
                out[shp.name] = dist
    return out


def _slot_edges(spec: ScenarioSpec) -> tuple[np.ndarray, int]:
    """The T+1 slot boundaries (int64 ns since the epoch, UTC) and the slot length in ns."""
    start = np.datetime64(spec.horizon.start.replace(tzinfo=None), "ns").astype(np.int64)
    slot_ns = spec.horizon.slot_minutes * 60 * 1_000_000_000
    return start + slot_ns * np.arange(spec.horizon.slots + 1, dtype=np.int64), slot_ns


def _unique_files(names: list[str]) -> list[str]:
    """``names`` with a ``-N`` suffix on any that repeats an earlier one (case-insensitively): names that
    differ only in characters a file name cannot keep (``c:1`` and ``c_1``) get files of their own."""
    seen: set[str] = set()
    out = []
    for i, n in enumerate(names):
        stem, ext = n.rsplit(".", 1)
        cand, j = n, i
        while cand.lower() in seen:
            cand = f"{stem}-{j}.{ext}"
            j += 1
        seen.add(cand.lower())
        out.append(cand)
    return out


def arrivals_file(name: str) -> str:
    """The file :meth:`Scenario.save` gives a class's arrivals table."""
    return "arrivals_" + re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".csv"


def _read_arrivals(reader: "_Reader", spec: ScenarioSpec, problems: list[Problem]) -> dict[str, pd.DataFrame]:
    """The classes' arrivals tables that read without problems (the others add to ``problems``)."""
    out = {}
    for i, kc in enumerate(spec.classes):
        if kc.arrivals is None:
            continue
        frame, where, label = reader.read(f"classes[{i}].arrivals", kc.arrivals, ARRIVAL_COLUMNS)
        if frame is None:
            continue
        table = validate_arrivals(frame, where, label, class_level(kc.slo), problems, row_problems)
        if table is not None:
            out[kc.name] = table
    return out


def shape_file(name: str) -> str:
    """The file :meth:`Scenario.save` gives a shape's distribution table."""
    return "shape_" + re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".csv"


def _demand_how(statistic: str) -> str:
    """The alignment of the demand table for ``options.demand_statistic``."""
    return {"mean": "mean", "peak": "max"}.get(statistic, statistic)


def _aligned_demand(sc: "Scenario", statistic: str) -> np.ndarray:
    """The [K, O, T] demand of ``sc``'s (validated) demand table taken with another statistic."""
    frame = sc.tables["demand"]
    edges, slot_ns = _slot_edges(sc.spec)
    kix = {n: i for i, n in enumerate(sc.classes)}
    oix = {n: i for i, n in enumerate(sc.origins)}
    groups = list(frame.groupby(["class", "origin"], sort=True))
    step = table_step([g["timestamp"].to_numpy().astype(np.int64) for _, g in groups])
    out = np.zeros((len(kix), len(oix), sc.n_slots))
    for (k, o), grp in groups:
        vals, probs = align_series(grp["timestamp"].to_numpy().astype(np.int64), grp["rate_rps"].to_numpy(float),
                                   edges, slot_ns, _demand_how(statistic), f"demand ({k}, {o})", step)
        if vals is None:  # pragma: no cover - the table was aligned once already
            raise ScenarioError(probs)
        out[kix[k], oix[o]] = vals
    return out


def scaling_problems(spec: ScenarioSpec, where: str = "options") -> list[Problem]:
    """Problems of ``options.scaling``: initial replicas naming an unknown region, model or GPU type, or
    repeating a (region, config); a loading bandwidth with a model whose size is not stated."""
    sc = spec.options.scaling
    if sc is None:
        return []
    regions = {r.name for r in spec.regions}
    models = {m.name for m in spec.models}
    gpus = {g.name for g in spec.gpu_types}
    problems = []
    if sc.load_gb_per_s is not None:
        for i, m in enumerate(spec.models):
            if m.params_billion is None:
                problems.append(Problem(f"models[{i}].params_billion", f"model {m.name} needs its size to load its "
                                        f"weights at {where}.scaling.load_gb_per_s"))
    seen: dict[tuple, int] = {}
    for i, r in enumerate(sc.initial):
        at = f"{where}.scaling.initial[{i}]"
        for fld, known, what in (("region", regions, "region"), ("model", models, "model"), ("gpu", gpus, "GPU type")):
            if getattr(r, fld) not in known:
                problems.append(Problem(f"{at}.{fld}", f"unknown {what} {token(getattr(r, fld), 32)}"))
        key = (r.region, r.model, r.gpu, r.tp, r.pp, float(f"{r.freq_mhz:.10g}"))
        if key in seen:
            problems.append(Problem(at, f"repeats scaling.initial[{seen[key]}] (same region and config)"))
        seen.setdefault(key, i)
    return problems


def startup_seconds(spec: ScenarioSpec, model: str) -> float:
    """Seconds a new replica of ``model`` takes before it serves: ``provision_s`` plus its weights (2 bytes
    per parameter) at ``load_gb_per_s`` (0 without ``options.scaling``)."""
    sc = spec.options.scaling
    if sc is None:
        return 0.0
    out = float(sc.provision_s)
    if sc.load_gb_per_s is not None:
        size = next((m.params_billion for m in spec.models if m.name == model), None)
        if size is not None:
            out += 2.0 * float(size) / float(sc.load_gb_per_s)
    return out


def capacity_factor_problems(spec: ScenarioSpec, where: str = "options") -> list[Problem]:
    """Problems of ``options.capacity_factors``: unknown model, GPU type or class, a class served by
    another model, or two entries for the same (model, gpu, tp, pp, freq_mhz, class)."""
    models = {m.name for m in spec.models}
    gpus = {g.name for g in spec.gpu_types}
    cls_model = {k.name: k.model for k in spec.classes}
    seen: dict[tuple, int] = {}
    problems = []
    for i, f in enumerate(spec.options.capacity_factors):
        at = f"{where}.capacity_factors[{i}]"
        if f.model not in models:
            problems.append(Problem(f"{at}.model", f"unknown model {token(f.model, 32)}"))
        if f.gpu not in gpus:
            problems.append(Problem(f"{at}.gpu", f"unknown GPU type {token(f.gpu, 32)}"))
        if f.class_ not in cls_model:
            problems.append(Problem(f"{at}.class", f"unknown class {token(f.class_, 32)}"))
        elif f.model in models and cls_model[f.class_] != f.model:
            problems.append(Problem(f"{at}.class", f"class {f.class_} is served by model {cls_model[f.class_]}, "
                                                   f"not {f.model}"))
        key = (f.model, f.gpu, f.tp, f.pp, float(f"{f.freq_mhz:.10g}"), f.class_)
        if key in seen:
            problems.append(Problem(at, f"repeats capacity_factors[{seen[key]}] (same config and class)"))
        seen.setdefault(key, i)
    return problems


def _check_refs(frame, col, known, rowlabel, problems, what) -> np.ndarray:
    """Flag rows whose ``col`` is not in ``known``; returns the mask of good rows."""
    ok = frame[col].isin(known).to_numpy().copy()
    if not ok.all():
        bad_vals = pd.unique(frame.loc[~ok, col])
        for v in bad_vals[:MAX_ROWS_LISTED]:
            rows = np.nonzero((frame[col] == v).to_numpy())[0]
            more = f" (and {len(rows) - 1} more rows)" if len(rows) > 1 else ""
            problems.append(Problem(rowlabel(int(rows[0])), f"unknown {what} {token(v, 32)}{more}"))
        if len(bad_vals) > MAX_ROWS_LISTED:
            problems.append(Problem(rowlabel(int(np.nonzero(~ok)[0][0])),
                                    f"... and {len(bad_vals) - MAX_ROWS_LISTED} more unknown {what} names"))
    return ok


def _resolve(spec: ScenarioSpec, base_dir: Path, source: str, allow_dirs: tuple[Path, ...] = (),
             document: str | None = None) -> Scenario:
    problems: list[Problem] = []
    warnings: list[str] = []
    reg = [r.name for r in spec.regions]
    gpus = [g.name for g in spec.gpu_types]
    models = [m.name for m in spec.models]
    shapes = [s.name for s in spec.shapes]
    classes = [k.name for k in spec.classes]
    origins = [o.name for o in spec.origins]
    for lst, w in (
        (gpus, "gpu_types"),
        (models, "models"),
        (shapes, "shapes"),
        (classes, "classes"),
        (reg, "regions"),
        (origins, "origins"),
    ):
        _check_unique(lst, f"{source}: {w}", problems)
    for i, k in enumerate(spec.classes):
        if k.model not in models:
            problems.append(Problem(f"{source}: classes[{i}].model", f"unknown model {k.model!r}"))
        if k.shape not in shapes:
            problems.append(Problem(f"{source}: classes[{i}].shape", f"unknown shape {k.shape!r}"))
    for i, r in enumerate(spec.regions):
        for j, g in enumerate(r.gpus):
            if g.type not in gpus:
                problems.append(Problem(f"{source}: regions[{i}].gpus[{j}].type", f"unknown GPU type {g.type!r}"))
    for i, o in enumerate(spec.origins):
        for rname in o.rtt_ms:
            if rname not in reg:
                problems.append(Problem(f"{source}: origins[{i}].rtt_ms", f"unknown region {rname!r}"))
        if o.allowed_regions is not None:
            for rname in o.allowed_regions:
                if rname not in reg:
                    problems.append(Problem(f"{source}: origins[{i}].allowed_regions", f"unknown region {rname!r}"))
                elif rname not in o.rtt_ms:
                    problems.append(
                        Problem(f"{source}: origins[{i}].allowed_regions", f"region {rname!r} has no rtt_ms entry")
                    )
        if not o.rtt_ms:
            problems.append(Problem(f"{source}: origins[{i}].rtt_ms", "no region is reachable (empty rtt_ms)"))

    problems.extend(capacity_factor_problems(spec, f"{source}: options"))
    problems.extend(scaling_problems(spec, f"{source}: options"))
    R, G, K, O, T = len(reg), len(gpus), len(classes), len(origins), spec.horizon.slots
    rix = {n: i for i, n in enumerate(reg)}
    gix = {n: i for i, n in enumerate(gpus)}
    kix = {n: i for i, n in enumerate(classes)}
    oix = {n: i for i, n in enumerate(origins)}
    edges, slot_ns = _slot_edges(spec)

    reader = _Reader(base_dir, source, problems, allow_dirs)
    tables: dict[str, pd.DataFrame] = {}

    # ---- profiles
    prof, pwhere, plabel = reader.read("profiles", spec.profiles, PROFILE_COLUMNS)
    if prof is not None:
        ok = _check_refs(prof, "model", models, plabel, problems, "model")
        ok = ok & _check_refs(prof, "gpu", gpus, plabel, problems, "GPU type")
        ok = ok & _check_refs(prof, "shape", shapes, plabel, problems, "shape")
        for col in ("tp", "pp", "freq_mhz", "max_rps", "ttft_ms", "tbt_ms"):
            zero = (prof[col] <= 0).to_numpy()
            if zero.any():
                row_problems(problems, plabel, zero, lambda i, c=col: f"{c}: must be positive")
                ok = ok & ~zero
        low = (prof["busy_power_w"] < prof["idle_power_w"]).to_numpy()
        if low.any():
            row_problems(problems, plabel, low, lambda i: "busy_power_w is below idle_power_w")
        svc = (prof["service_ms"] <= 0).to_numpy()   # NaN (empty) compares False
        if svc.any():
            row_problems(problems, plabel, svc, lambda i: "service_ms: must be positive (or empty)")
        act = prof["active_power_w"]
        for bad, msg in (((act < prof["idle_power_w"]).to_numpy(), "active_power_w is below idle_power_w"),
                         ((act > prof["busy_power_w"]).to_numpy(), "active_power_w is above busy_power_w")):
            if bad.any():  # NaN (empty: idle power is used) compares False
                row_problems(problems, plabel, bad, lambda i, m=msg: m)
        stat = prof["statistic"].astype(str).str.strip().replace("", "mean")
        bad_stat = ~stat.isin(STATISTICS).to_numpy()
        if bad_stat.any():
            row_problems(problems, plabel, bad_stat,
                         lambda i: f"statistic: {token(stat.iloc[i], 16)} is not one of {', '.join(STATISTICS)}")
        prof["statistic"] = stat
        dup = prof.duplicated(PROFILE_KEY, keep="first").to_numpy()
        if dup.any():
            row_problems(problems, plabel, dup, lambda i: "duplicate profile row for (model, gpu, tp, pp, freq_mhz, shape)")
        prof = prof.sort_values(PROFILE_KEY, kind="stable").reset_index(drop=True)
        tables["profiles"] = prof
        for k in spec.classes:
            if not ((prof["model"] == k.model) & (prof["shape"] == k.shape)).any():
                warnings.append(f"class {k.name!r}: no profile rows for model {k.model!r} and shape {k.shape!r}")

    for name, dist in _read_distributions(reader, spec, problems).items():
        tables[f"shape:{name}"] = dist
    for name, arr in _read_arrivals(reader, spec, problems).items():
        tables[f"arrivals:{name}"] = arr

    vm_names = sorted({v.name for r in spec.regions for v in r.vms})

    def series(field_name, value, columns, keycols, valcol, how, required_keys=None):
        frame, where, label = reader.read(field_name, value, columns)
        if frame is None:
            return None
        ok = np.ones(len(frame), bool)
        refs = {"region": (reg, "region"), "class": (classes, "class"), "origin": (origins, "origin"),
                "gpu": (gpus + vm_names, "GPU or VM type" if vm_names else "GPU type"),
                "market": (["", *MARKETS], "market (on-demand or spot)")}
        for c in keycols:
            known, what = refs[c]
            ok = ok & _check_refs(frame, c, known, label, problems, what)
        frame = frame[ok]
        out = {}
        groups = list(frame.groupby(keycols, sort=True))
        step = table_step([g["timestamp"].to_numpy().astype(np.int64) for _, g in groups])
        for key, grp in groups:
            key = key if isinstance(key, tuple) else (key,)
            kdesc = ", ".join(f"{c}={v}" for c, v in zip(keycols, key))
            vals, probs = align_series(
                grp["timestamp"].to_numpy().astype(np.int64), grp[valcol].to_numpy(float), edges, slot_ns, how,
                f"{where} ({kdesc})", step,
            )
            problems.extend(probs)
            if vals is not None:
                out[key] = vals
        if required_keys is not None:
            for key in required_keys:
                if key not in out and not any(p.where.startswith(where) for p in problems):
                    problems.append(Problem(where, f"no series for {', '.join(f'{c}={v}' for c, v in zip(keycols, key))}"))
        tables[field_name] = frame.sort_values(keycols + ["timestamp"], kind="stable").reset_index(drop=True)
        return out

    carbon = np.full((R, T), np.nan)
    cs = series("carbon_intensity", spec.carbon_intensity, CARBON_COLUMNS, ["region"], "gco2_per_kwh", "mean",
                [(r,) for r in reg])
    if cs:
        for (r,), v in cs.items():
            carbon[rix[r]] = v

    demand = np.zeros((K, O, T))
    ds = series("demand", spec.demand, DEMAND_COLUMNS, ["class", "origin"], "rate_rps",
                _demand_how(spec.options.demand_statistic))
    if ds:
        for (k, o), v in ds.items():
            demand[kix[k], oix[o]] = v

    elec = np.zeros((R, T))
    priced = np.zeros(R, bool)
    if spec.electricity_price is not None:
        es = series("electricity_price", spec.electricity_price, PRICE_COLUMNS, ["region"], "usd_per_mwh", "mean")
        if es:
            for (r,), v in es.items():
                elec[rix[r]] = v
                priced[rix[r]] = True

    avail = np.zeros((R, G, T), dtype=np.int64)
    gprice = np.full((R, G), np.nan)
    for i, r in enumerate(spec.regions):
        for g in r.gpus:
            if g.type in gix:
                avail[i, gix[g.type]] = g.count
                gprice[i, gix[g.type]] = g.price_usd_per_gpu_hour
    vm_offers = _vm_offers(spec, avail, gprice, T, source, problems)
    if vm_offers is not None and "profiles" in tables:
        problems.extend(_packing_problems(spec, tables["profiles"], source))
    if spec.availability is not None:
        av = series("availability", spec.availability, AVAIL_COLUMNS, ["region", "gpu", "market"], "count", "min")
        if "availability" in tables and (tables["availability"]["market"] == "").all():
            tables["availability"] = tables["availability"].drop(columns="market")
        if av:
            for (r, g, mk), v in av.items():
                if g not in gix:  # a VM type: its on-demand or spot VMs
                    mk = mk or "on-demand"
                    hit = [] if vm_offers is None else vm_offers.index[
                        (vm_offers["region"] == r) & (vm_offers["name"] == g) & (vm_offers["market"] == mk)]
                    if not len(hit):
                        problems.append(Problem(f"{source}: availability", f"VM type {g!r} is not offered {mk} in "
                                                f"region {r!r} (add it to regions[{rix[r]}].vms)"))
                        continue
                    vm_offers.at[hit[0], "avail"] = np.minimum(vm_offers.at[hit[0], "avail"],
                                                               np.floor(v + 1e-9).astype(np.int64))
                    continue
                if mk not in ("", "on-demand"):
                    problems.append(Problem(f"{source}: availability", f"GPU type {g!r} in region {r!r}: market "
                                            f"{mk!r} applies only to VM types (per-GPU offers are on demand)"))
                    continue
                if np.isnan(gprice[rix[r], gix[g]]):
                    problems.append(
                        Problem(f"{source}: availability", f"GPU type {g!r} is not offered in region {r!r} "
                                f"(add it to regions[{rix[r]}].gpus with a price)")
                    )
                    continue
                avail[rix[r], gix[g]] = np.floor(v + 1e-9).astype(np.int64)
                if vm_offers is not None:
                    hit = vm_offers.index[(vm_offers["region"] == r) & (vm_offers["name"] == g)
                                          & vm_offers["flexible"]]
                    for i in hit:
                        vm_offers.at[i, "avail"] = avail[rix[r], gix[g]].copy()

    rtt = np.full((O, R), np.nan)
    allowed = np.zeros((O, R), bool)
    for i, o in enumerate(spec.origins):
        for rname, ms in o.rtt_ms.items():
            if rname in rix:
                rtt[i, rix[rname]] = ms
        names = o.allowed_regions if o.allowed_regions is not None else list(o.rtt_ms)
        for rname in names:
            if rname in rix and rname in o.rtt_ms:
                allowed[i, rix[rname]] = True

    if problems:
        raise ScenarioError(problems)
    return Scenario(
        spec=spec,
        source=source,
        profiles=prof,
        carbon=carbon,
        elec_price=elec,
        elec_priced=priced,
        availability=avail,
        gpu_price=gprice,
        demand=demand,
        rtt=rtt,
        allowed=allowed,
        tables=tables,
        warnings=tuple(warnings),
        input_files=tuple(([document] if document else []) + reader.files),
        base_dir=str(base_dir),
        document=document,
        vm_offers=vm_offers,
    )


def _packing_problems(spec: ScenarioSpec, prof: pd.DataFrame, source: str) -> list[Problem]:
    """VM packing (``formulations.constraints.vm_packing``) is exact when, per region and GPU type, the GPU
    counts of the VM types and of the replicas that fit in them divide each other (1, 2, 4, 8, ...)."""
    across = {m.name: m.pipeline_across_vms for m in spec.models}
    problems = []
    for i, r in enumerate(spec.regions):
        for gname in sorted({v.gpu for v in r.vms}):
            vm_sizes = {int(v.gpus) for v in r.vms if v.gpu == gname}
            rows = prof[prof["gpu"] == gname]
            items = {int(tp) if across.get(m, False) else int(tp) * int(pp)
                     for m, tp, pp in rows[["model", "tp", "pp"]].itertuples(index=False)}
            sizes = sorted({s for s in items if s <= max(vm_sizes)} | vm_sizes)
            bad = [(a, b) for a, b in zip(sizes, sizes[1:]) if b % a]
            if bad:
                a, b = bad[0]
                problems.append(Problem(f"{source}: regions[{i}].vms", f"{gname}: VMs and replicas of {a} and {b} GPUs "
                                        "do not divide each other; VM packing needs GPU counts that do (1, 2, 4, 8, "
                                        "...): drop those profile rows or VM types"))
    return problems


def _vm_offers(spec: ScenarioSpec, avail: np.ndarray, gprice: np.ndarray, T: int, source: str,
               problems: list[Problem]) -> pd.DataFrame | None:
    """Every (region, VM type, market) offer as a row, when some region states ``vms`` (None otherwise):
    region, r, name, gpu, g, gpus, market, price (USD per VM-hour), avail ([T] VMs), flexible (a per-GPU
    offer: VMs of one GPU that group freely), rate (reclaims per VM-hour), restart_s (NaN: startup)."""
    if not any(r.vms for r in spec.regions):
        return None
    gix = {g.name: i for i, g in enumerate(spec.gpu_types)}
    gnames = set(gix)
    rows = []
    for i, r in enumerate(spec.regions):
        for g in r.gpus:
            if g.type in gix:
                rows.append(dict(region=r.name, r=i, name=g.type, gpu=g.type, g=gix[g.type], gpus=1, market="on-demand",
                                 price=float(g.price_usd_per_gpu_hour), avail=avail[i, gix[g.type]].copy(),
                                 flexible=True, rate=0.0, restart_s=np.nan))
        for j, v in enumerate(r.vms):
            at = f"{source}: regions[{i}].vms[{j}]"
            if v.gpu not in gix:
                problems.append(Problem(f"{at}.gpu", f"unknown GPU type {token(v.gpu, 32)}"))
                continue
            if v.name in gnames:
                problems.append(Problem(f"{at}.name", f"{v.name!r} is a GPU type's name; name VM types apart"))
                continue
            base = dict(region=r.name, r=i, name=v.name, gpu=v.gpu, g=gix[v.gpu], gpus=int(v.gpus), flexible=False,
                        restart_s=np.nan if v.spot_restart_s is None else float(v.spot_restart_s))
            rows.append(base | dict(market="on-demand", price=float(v.price_usd_per_hour),
                                    avail=np.full(T, int(v.count), dtype=np.int64), rate=0.0))
            if v.spot_price_usd_per_hour is not None and v.spot_count > 0:
                rows.append(base | dict(market="spot", price=float(v.spot_price_usd_per_hour),
                                        avail=np.full(T, int(v.spot_count), dtype=np.int64),
                                        rate=float(v.spot_interruptions_per_hour)))
    out = pd.DataFrame(rows, columns=["region", "r", "name", "gpu", "g", "gpus", "market", "price", "avail",
                                      "flexible", "rate", "restart_s"])
    return out.astype({"r": np.int64, "g": np.int64, "gpus": np.int64, "flexible": bool})

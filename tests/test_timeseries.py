"""Aligning step-function series to slots: hand-computed values, gaps and coverage errors."""

import numpy as np
import pytest
from builders import scenario

import planner
from planner.errors import ScenarioError
from planner.scenario.timeseries import align_series

H = 3_600_000_000_000  # one hour in ns
T0 = np.datetime64("2024-01-01T00:00", "ns").astype(np.int64)


def edges(n, step):
    return T0 + step * np.arange(n + 1, dtype=np.int64)


def test_hourly_series_on_two_hour_slots_is_averaged():
    """Values 1, 3, 5, 7 hourly; 2-hour slots -> (1+3)/2 = 2 and (5+7)/2 = 6."""
    v, probs = align_series(T0 + H * np.arange(4), np.array([1.0, 3, 5, 7]), edges(2, 2 * H), 2 * H, "mean", "x")
    assert probs == [] and v.tolist() == [2.0, 6.0]


def test_hourly_series_on_half_hour_slots_holds_each_value():
    """A value holds until the next timestamp: 30-min slots over hourly 10, 20 -> 10, 10, 20, 20."""
    v, _ = align_series(T0 + H * np.arange(2), np.array([10.0, 20.0]), edges(4, H // 2), H // 2, "mean", "x")
    assert v.tolist() == [10.0, 10.0, 20.0, 20.0]


def test_offset_slots_are_time_weighted():
    """Slot from 00:30 to 01:30 over hourly 10, 20 -> half of each = 15."""
    e = T0 + H // 2 + H * np.arange(2, dtype=np.int64)
    v, _ = align_series(T0 + H * np.arange(2), np.array([10.0, 20.0]), e, H, "mean", "x")
    assert v.tolist() == [15.0]


def test_min_for_availability():
    v, _ = align_series(T0 + H * np.arange(4), np.array([8.0, 2, 6, 4]), edges(2, 2 * H), 2 * H, "min", "x")
    assert v.tolist() == [2.0, 4.0]


def test_unsorted_input_is_fine():
    v, _ = align_series(T0 + H * np.array([1, 0]), np.array([20.0, 10.0]), edges(2, H), H, "mean", "x")
    assert v.tolist() == [10.0, 20.0]


@pytest.mark.parametrize("ts,msg", [
    (np.array([0, 1, 3]), "gap in the series"),
    (np.array([0, 1, 1]), "appears more than once"),
    (np.array([1, 2, 3]), "series covers"),
    (np.array([0, 1]), "series covers"),
])
def test_gaps_duplicates_and_coverage_are_errors(ts, msg):
    v, probs = align_series(T0 + H * ts, np.arange(len(ts), dtype=float), edges(3, H), H, "mean", "where")
    assert v is None and msg in probs[0].message and probs[0].where == "where"


def test_scenario_with_30_minute_slots_uses_hourly_tables():
    """Hourly carbon 100 then 300 on 30-minute slots: slots see 100, 100, 300, 300 g/kWh."""
    doc = scenario(slots=4, slot_minutes=30)
    doc["carbon_intensity"] = [{"timestamp": f"2024-01-01T0{h}:00:00Z", "region": "A", "gco2_per_kwh": v}
                               for h, v in ((0, 100.0), (1, 300.0))]
    sc = planner.scenario_from_dict(doc)
    assert sc.carbon[0].tolist() == [100.0, 100.0, 300.0, 300.0]
    assert sc.slot_hours == 0.5


def test_demand_gap_is_reported_with_its_key():
    """The table's step is its smallest spacing (hourly here), so a missing hour in one series is a gap."""
    doc = scenario(slots=3, demand={("k", "o"): [1.0, 2.0, 3.0], ("k", "p"): [1.0, 1.0, 1.0]},
                   origins={"o": {"rtt_ms": {"A": 10.0}}, "p": {"rtt_ms": {"A": 10.0}}})
    doc["demand"] = [r for r in doc["demand"] if not (r["origin"] == "o" and r["timestamp"].endswith("01:00:00Z"))]
    with pytest.raises(ScenarioError) as ei:
        planner.scenario_from_dict(doc)
    assert "class=k, origin=o" in str(ei.value) and "gap in the series" in str(ei.value)


def test_per_slot_availability_overrides_constant_count():
    doc = scenario(slots=2, availability=[
        {"timestamp": "2024-01-01T00:00:00Z", "region": "A", "gpu": "G", "count": 3},
        {"timestamp": "2024-01-01T01:00:00Z", "region": "A", "gpu": "G", "count": 0}])
    sc = planner.scenario_from_dict(doc)
    assert sc.availability[0, 0].tolist() == [3, 0]

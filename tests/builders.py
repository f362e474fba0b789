"""Small scenarios built in memory, with inline tables, for hand-checkable tests."""

from __future__ import annotations

import copy
from typing import Any

START = "2024-01-01T00:00:00Z"


def ts(t: int, slot_minutes: int = 60) -> str:
    h, m = divmod(t * slot_minutes, 60)
    d, h = divmod(h, 24)
    return f"2024-01-{1 + d:02d}T{h:02d}:{m:02d}:00Z"


def profile(model="m", gpu="G", tp=1, pp=1, freq=1000, shape="s", max_rps=10.0, ttft=100.0, tbt=20.0,
            busy=300.0, idle=100.0, source="test", active=None):
    """One profile row; ``active`` (active_power_w) is left out unless given."""
    row = dict(model=model, gpu=gpu, tp=tp, pp=pp, freq_mhz=freq, shape=shape, max_rps=max_rps, ttft_ms=ttft,
               tbt_ms=tbt, busy_power_w=busy, idle_power_w=idle, source=source)
    if active is not None:
        row["active_power_w"] = active
    return row


def scenario(
    *,
    regions: dict[str, dict] | None = None,
    carbon: dict[str, list[float]] | None = None,
    demand: dict[tuple[str, str], list[float]] | None = None,
    profiles: list[dict] | None = None,
    origins: dict[str, dict] | None = None,
    classes: list[dict] | None = None,
    gpus: list[str] | None = None,
    models: list[str] | None = None,
    shapes: list[dict] | None = None,
    slots: int = 1,
    slot_minutes: int = 60,
    options: dict | None = None,
    prices: dict[str, list[float]] | None = None,
    availability: list[dict] | None = None,
) -> dict[str, Any]:
    """A scenario document with inline tables.

    Defaults: one region 'A' (PUE 1, 10 GPUs 'G' at 1 USD/h, carbon 100 g/kWh), one origin 'o'
    (RTT 10 ms), one model 'm', one shape 's' (100 in / 10 out tokens), one class 'k'
    (TTFT 500 ms, TBT 50 ms), one config (10 req/s, 300 W busy, 100 W idle), demand 8 req/s.
    """
    regions = regions or {"A": {"pue": 1.0, "gpus": [{"type": "G", "count": 10, "price_usd_per_gpu_hour": 1.0}]}}
    carbon = carbon or {r: [100.0] * slots for r in regions}
    demand = demand or {("k", "o"): [8.0] * slots}
    origins = origins or {"o": {"rtt_ms": {r: 10.0 for r in regions}}}
    classes = classes or [{"name": "k", "model": "m", "shape": "s", "slo": {"ttft_ms": 500, "tbt_ms": 50}}]
    doc = {
        "name": "test",
        "horizon": {"start": START, "slot_minutes": slot_minutes, "slots": slots},
        "gpu_types": [{"name": g} for g in (gpus or ["G"])],
        "models": [{"name": m} for m in (models or ["m"])],
        "shapes": shapes or [{"name": "s", "input_tokens": 100, "output_tokens": 10}],
        "classes": classes,
        "regions": [{"name": n, **copy.deepcopy(r)} for n, r in regions.items()],
        "origins": [{"name": n, **copy.deepcopy(o)} for n, o in origins.items()],
        "profiles": profiles or [profile()],
        "carbon_intensity": [
            {"timestamp": ts(t, slot_minutes), "region": r, "gco2_per_kwh": v}
            for r, vals in carbon.items() for t, v in enumerate(vals)
        ],
        "demand": [
            {"timestamp": ts(t, slot_minutes), "class": k, "origin": o, "rate_rps": v}
            for (k, o), vals in demand.items() for t, v in enumerate(vals)
        ],
        "options": {"max_utilization": 1.0, **(options or {})},
    }
    if prices:
        doc["electricity_price"] = [
            {"timestamp": ts(t, slot_minutes), "region": r, "usd_per_mwh": v}
            for r, vals in prices.items() for t, v in enumerate(vals)
        ]
    if availability:
        doc["availability"] = availability
    return doc

"""Build the embedded week example (``data/default/week.yaml`` and its ``week_*.csv`` tables).

The week shares the default's tables that do not depend on the day (profiles, shapes' length
distributions, arrivals: ``data/default/*.csv``) and differs in:

* **horizon**: 2023-06-12 00:00 UTC (a Monday) to 2023-06-19, 168 hourly slots;
* **carbon and electricity prices**: the same zones and files as the default, read by the same
  functions of ``tools/build_default.py`` for those 7 days (``week_carbon.csv``,
  ``week_electricity_price.csv``);
* **demand**: the default day's demand (``data/default/demand.csv``: its classes, origins and daily
  shape) repeated on each of the 7 days, unchanged (synthetic in the same way as the default day; no
  day-to-day noise: issue 13 adds forecasts on noisy histories);
* **fleet as VMs**: every (region, GPU type) of the default becomes the VM type whose price the default
  uses (``tools/prices.py``: the instance with the most GPUs, 8 for every type here), with its on-demand
  and spot price per VM-hour (catalog, anycloud-sh/catalog snapshot May 2026; GCP hosts included as
  there). VMs available: the default's GPU count / GPUs per VM, on demand and (where the catalog lists
  a spot price) the same number on spot (assumption). Reclaims: ``SPOT_RATE`` per spot VM-hour
  (assumption: no public per-region figure in the shared data), each down for provisioning plus loading;
* **classes**: the chat classes may run on spot with ``on_demand_floor`` ``FLOOR`` (assumption: half of a
  chat tier's traffic stays servable on demand); code completion runs on demand only;
* **scaling**: ``provision_s`` 155 s (SageServe's measured VM spin-up on Azure) and ``load_gb_per_s``
  1.0 (SageServe's measured model interchange of about 150 s, for Llama 3.1 70B's 141 GB of weights).

    python tools/build_week.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import build_default as bd  # noqa: E402
from prices import gpu_prices  # noqa: E402

START = "2023-06-12"
DAYS = 7
SPOT_RATE = 0.02   # reclaims per spot VM-hour (assumption: about one per VM every two days)
FLOOR = 0.5        # on_demand_floor of the chat classes (assumption)
SPOT_CLASSES = ("chat-short", "chat-long", "chat-70b")
PROVISION_S = 155.0  # SageServe (Azure VM spin-up, measured)
LOAD_GB_PER_S = 1.0  # SageServe's ~150 s model interchange for 141 GB (Llama 3.1 70B, bf16)


def vm_offers(shared: Path) -> dict[tuple[str, str], dict]:
    """Per (region, GPU type) of the default: the VM type behind the default's per-GPU price."""
    table = gpu_prices(shared)
    out = {}
    for region, r in bd.REGIONS.items():
        for gpu in r["counts"]:
            cand = table[(table["gpu"] == gpu)
                         & pd.Series(list(zip(table["provider"], table["cloud_region"]))).isin(r["clouds"])]
            best = cand.sort_values(["on_demand_usd_per_gpu_hour", "provider", "cloud_region"], kind="stable").iloc[0]
            m = re.search(r"\((\d+)x |x(\d+) GPU-only", best["source"])
            n = int(m.group(1) or m.group(2))
            out[(region, gpu)] = dict(instance=best["instance_type"], gpus=n, provider=best["provider"],
                                      cloud_region=best["cloud_region"],
                                      od=float(best["on_demand_usd_per_gpu_hour"]) * n,
                                      spot=None if pd.isna(best["spot_usd_per_gpu_hour"])
                                      else float(best["spot_usd_per_gpu_hour"]) * n)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=bd.default_shared())
    ap.add_argument("--out", type=Path, default=HERE.parent / "data" / "default")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    shared = args.shared.resolve()
    bd.DAY, bd.SLOTS = START, 24 * DAYS
    carbon = bd.build_carbon(shared)
    prices_ts, _ = bd.build_prices(shared)
    day = pd.read_csv(args.out / "demand.csv")
    t0 = pd.to_datetime(day["timestamp"], utc=True)
    parts = []
    for d in range(DAYS):
        ts = t0 - t0.min().normalize() + pd.Timestamp(f"{START}T00:00:00Z") + pd.Timedelta(days=d)
        parts.append(day.assign(timestamp=ts.dt.strftime(bd.TS_FMT),
                                source=day["source"] + f"; the default day repeated (day {d + 1} of {DAYS})"))
    demand = pd.concat(parts, ignore_index=True).sort_values(["class", "origin", "timestamp"], kind="stable")
    doc = yaml.safe_load((args.out / "scenario.yaml").read_text())
    offers = vm_offers(shared)
    doc["name"] = f"week-{START}"
    doc["description"] = (
        f"Embedded week example: the default's fleet, classes and daily shape over 7 days ({START} to 2023-06-18, "
        "168 hourly slots) with real hourly carbon and electricity prices of the same zones, the fleet rented as "
        "VMs on demand and on spot (catalog prices), and the fleet planned over time (startup 155 s + weights at "
        "1 GB/s). Built by tools/build_week.py; see data/README.md.")
    doc["horizon"] = {"start": f"{START}T00:00:00Z", "slot_minutes": 60, "slots": 24 * DAYS}
    for c in doc["classes"]:
        if c["name"] in SPOT_CLASSES:
            c["spot"] = True
            c["on_demand_floor"] = FLOOR
    for r in doc["regions"]:
        vms = []
        for g in r.pop("gpus"):
            o = offers[(r["name"], g["type"])]
            vm = {"name": o["instance"], "gpu": g["type"], "gpus": o["gpus"],
                  "price_usd_per_hour": round(o["od"], 4), "count": -(-g["count"] // o["gpus"])}
            src = f"{o['provider']} {o['instance']} {o['cloud_region']}, anycloud-sh/catalog snapshot May 2026"
            if o["spot"] is not None:
                vm |= {"spot_price_usd_per_hour": round(o["spot"], 4), "spot_count": vm["count"],
                       "spot_interruptions_per_hour": SPOT_RATE}
                src += f"; spot count and reclaim rate {SPOT_RATE}/h: assumptions"
            vm["source"] = src
            vms.append(vm)
        r["vms"] = vms
    doc["carbon_intensity"] = "week_carbon.csv"
    doc["demand"] = "week_demand.csv"
    doc["electricity_price"] = "week_electricity_price.csv"
    doc["options"]["scaling"] = {"provision_s": PROVISION_S, "load_gb_per_s": LOAD_GB_PER_S}
    head = ("# Week example, generated by tools/build_week.py -- do not edit by hand.\n"
            "# Shares profiles, shapes and arrivals with the default (scenario.yaml); see data/README.md.\n")
    (args.out / "week.yaml").write_text(head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110))
    opts = dict(index=False, lineterminator="\n", float_format="%.10g")
    carbon.to_csv(args.out / "week_carbon.csv", **opts)
    demand.to_csv(args.out / "week_demand.csv", **opts)
    prices_ts.to_csv(args.out / "week_electricity_price.csv", **opts)
    if not args.quiet:
        print(f"wrote {args.out}/week.yaml, week_carbon.csv ({len(carbon)}), week_demand.csv ({len(demand)}), "
              f"week_electricity_price.csv ({len(prices_ts)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

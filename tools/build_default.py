#!/usr/bin/env python3
"""Build the embedded default scenario in ``data/default/`` from the raw public data.

Usage::

    python3 tools/build_default.py [--shared DIR] [--out DIR] [--quiet]

``--shared`` defaults to ``<repo>/../shared/data`` (the raw-data folder described by its own
README.md); ``--out`` defaults to the repository's ``data/default``. The script is
deterministic: same raw data in, byte-identical files out. It never copies raw files; every
output number is either read from a raw table (and said so in a ``source`` column) or computed
from the constants below, each of which names its origin. ``data/README.md`` is the long-form
description of the same derivation.

Outputs
-------
scenario.yaml          fleet, models, shapes, classes, origins, options (schema_version 1).
carbon.csv             timestamp,region,gco2_per_kwh,source -- 24 hourly values per region.
electricity_price.csv  timestamp,region,usd_per_mwh,source -- 24 hourly values per region.
demand.csv             timestamp,class,origin,rate_rps,source -- 24 hourly values per pair.
profiles.csv           model,gpu,tp,pp,freq_mhz,shape,max_rps,ttft_ms,tbt_ms,busy_power_w,
                       idle_power_w,active_power_w,source,expected_error -- the calibrated
                       performance model.
shape_<name>.csv       input_tokens,output_tokens,weight,source -- the joint length distribution
                       of each shape's trace requests (``plan data shapes --distribution``).

Derivation
----------
Day and regions. Planning day 2023-06-15 (a Thursday), 24 one-hour slots from 00:00 UTC.
Six regions on three continents, each tied to an Electricity Maps zone that has both a carbon
and an electricity-price series in the shared data (GB has carbon but no price series, so the
only European zone is DE-LU), and to the cloud regions used for prices (see REGIONS).

Carbon. ``carbon/electricitymaps-2023/<ZONE>.csv``, column "Carbon Intensity gCO2eq/kWh
(direct)", rows whose "Datetime (UTC)" falls on 2023-06-15. Values are copied unchanged
(rounded to 0.01). Attribution: Electricity Maps 2023 via HewlettPackard/sustain-cluster.

Electricity price. ``energy-prices/<ZONE>.csv``, column "Price (USD/MWh)", same day (UTC).
Negative prices would be clipped at 0 (the planner rejects negative numbers); none occur on
this day for the chosen zones, and the script reports how many values it clipped.

VM types and prices. ``tools/prices.py`` turns ``prices/{azure,gcp,lambda}_gpu_vms.csv`` into
per-GPU on-demand and spot prices (Azure: VM price / GPUs; GCP: GPU price plus its share of the host
VM; outliers dropped; see that module). Each region maps to Azure and GCP cloud regions
(REGIONS["clouds"]); a GPU type is rented as the VM type of the cheapest on-demand per-GPU price among
them, at that price times its GPUs per VM-hour (on demand and spot), and each ``vms`` entry's
``source`` names the instance and cloud region. A GPU type is offered in a region only where one of
its cloud regions lists it (no H200 in ca-central, no H100-80GB in ap-southeast).

GPU availability (``count``, as VMs: GPUs / GPUs per VM; the same number on spot), the spot reclaim
rate (``SPOT_RATE``) and PUE are stated assumptions (see REGIONS and README).

Network. ``network/continent_rtt_ms.csv`` azure rows give inter-continent RTT (US-EU 70 ms,
US-AP 230 ms, EU-AP 315 ms; Canada counts as US). Same-continent RTTs are an assumption
(15-40 ms, INTRA_RTT_MS). Data residency: traffic from origin ``eu`` may only be served in
eu-central.

Shapes and class mix. ``traces/azure-llm-2023/{conv,code}.csv`` (one hour, 2023-11-16).
Conversation output lengths are bimodal with an almost empty gap at 256-320 tokens, so conv
requests are split at 256 generated tokens: conv-short (<= 256) and conv-long (> 256). Each
shape is the (rounded) median of ContextTokens and GeneratedTokens of its subset; the code
shape is the median of the code trace. Class shares of the request count: code-70b = code
requests / all requests; chat-long = conv-long share; the conv-short share is split between
chat-short (8B) and chat-70b (70B) by CHAT70B_SHARE_OF_SHORT (an assumption).

Demand. rate(class, origin, slot) = TOTAL_MEAN_RPS x origin share x class share x
diurnal(local hour at slot midpoint), where diurnal(h) = 1 + a cos(2 pi (h - peak) / 24),
a = (R - 1)/(R + 1) (daily mean 1, peak/trough ratio R). Chat classes: peak 16:00 local,
R = 2.5; code: peak 14:00 local, R = 4 (working-day pattern). Origins' local time: na UTC-5,
eu UTC+2, asia UTC+8 (June). The shape is an assumption: no multi-day LLM trace is in the
shared data; the Azure trace is used only for shapes and the class mix.

Profiles. The scenario document is written first, then ``planner.perf.estimate.estimate_profiles``
fills the profile table from the calibrated performance model (``planner/perf/model.py``,
docs/performance-model.md), exactly as ``plan profile estimate`` does: every (model, GPU type,
tp in {1,2,4,8}, pp in {1,2}, one of 5 clock levels, shape) whose weights and KV cache fit and
that is not needlessly wide, each shape at the tightest SLO of its classes less the smallest RTT.
A100-80GB and H100-80GB rows rest on measurements; H200 and L4 rows are spec-sheet estimates.
Each row carries ``source`` and ``expected_error``. ``active_power_w`` is the model's power of a
replica running one sequence of the shape continuously (the zero-load intercept of its power under
continuous batching), capped at ``busy_power_w``.

Checks. The script asserts the schema invariants it can check without the planner (24 regular
hourly points per series, idle identical across shapes, busy >= active >= idle > 0, busy <= TDP x GPUs,
max_rps and busy power monotone in clock)
and prints a rough capacity check: for each slot, sum over classes of demand / (capacity of
the whole fleet at 0.8 utilisation if it served only that class, best SLO-feasible config per
GPU type, ignoring RTT) -- a value below 1 means a fractional split of the fleet serves all
demand; the same for the eu origin on eu-central alone (residency).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # the project (planner) and this folder (prices)

from prices import gpu_prices  # noqa: E402

from planner.datatools.carbon import carbon_table
from planner.datatools.common import table_csv
from planner.datatools.traces import load_trace, parse_bucket, trace_arrivals, trace_distribution, trace_shapes
from planner.perf.importers import profiles_to_csv
from planner.perf.model import gpu_spec, model_spec

# --------------------------------------------------------------------------------------------
# Constants (each with its origin; data/README.md repeats them with citations)
# --------------------------------------------------------------------------------------------

DAY = "2023-06-15"
SLOTS = 24
TS_FMT = "%Y-%m-%dT%H:%M:%SZ"
ATTR_CARBON = "Electricity Maps 2023 via HewlettPackard/sustain-cluster"
ATTR_PRICE = "HewlettPackard/sustain-cluster electricity_prices (standardized)"

# name -> electricity zone, Azure region, GCP region (for L4), PUE (assumed), location text,
# GPU availability (assumed counts, GPUs available every slot)
REGIONS = {
    "us-west": dict(
        zone="US-CAL-CISO", clouds=[("azure", "westus"), ("gcp", "us-west4")], pue=1.15,
        location="us-west, California, USA (Azure westus, GCP us-west4)",
        counts={"A100-80GB": 32, "H100-80GB": 32, "H200": 16, "L4": 64},
    ),
    "us-east": dict(
        zone="US-MIDA-PJM", clouds=[("azure", "eastus"), ("azure", "eastus2"), ("gcp", "us-east4")], pue=1.18,
        location="us-east, Virginia, USA (Azure eastus/eastus2, GCP us-east4)",
        counts={"A100-80GB": 48, "H100-80GB": 48, "H200": 16, "L4": 64},
    ),
    "ca-central": dict(
        zone="CA-ON", clouds=[("azure", "canadacentral"), ("gcp", "northamerica-northeast2")], pue=1.12,
        location="ca-central, Toronto, Canada (Azure canadacentral, GCP northamerica-northeast2)",
        counts={"A100-80GB": 16, "H100-80GB": 16, "L4": 32},
    ),
    "eu-central": dict(
        zone="DE-LU", clouds=[("azure", "germanywestcentral"), ("gcp", "europe-west3")], pue=1.15,
        location="eu-central, Frankfurt, Germany (Azure germanywestcentral, GCP europe-west3)",
        counts={"A100-80GB": 48, "H100-80GB": 32, "H200": 32, "L4": 64},
    ),
    "ap-southeast": dict(
        zone="SG", clouds=[("azure", "southeastasia"), ("gcp", "asia-southeast1")], pue=1.30,
        location="ap-southeast, Singapore (Azure southeastasia, GCP asia-southeast1)",
        counts={"A100-80GB": 16, "H200": 16, "L4": 32},
    ),
    "ap-northeast": dict(
        zone="JP-TK", clouds=[("azure", "japaneast"), ("gcp", "asia-northeast1")], pue=1.20,
        location="ap-northeast, Tokyo, Japan (Azure japaneast, GCP asia-northeast1)",
        counts={"A100-80GB": 32, "H100-80GB": 24, "H200": 16, "L4": 48},
    ),
}
CONTINENT = {  # continent group used by network/continent_rtt_ms.csv (Canada counts as US)
    "us-west": "US", "us-east": "US", "ca-central": "US",
    "eu-central": "EU", "ap-southeast": "AP", "ap-northeast": "AP",
}

# GPU types of the fleet (specs: data/gpu_specs.csv, each row citing its datasheet). A100-80GB and
# H100-80GB have measurements behind the performance model; H200 and L4 are estimated from their
# spec sheets (profile rows say so in `source` and carry `expected_error`).
GPUS = ["A100-80GB", "H100-80GB", "H200", "L4"]

# Models (architecture: data/model_specs.csv, from the Llama 3.1 model cards / config.json).
MODELS = ["llama-3.1-8b", "llama-3.1-70b"]

# Shapes: name -> (trace, subset); medians computed from the Azure 2023 trace
CONV_SPLIT_OUT = 256

# Classes: name -> model, shape, SLO (ms). Every target is a 99th percentile over the class's
# requests and 99 % of them must meet all their targets at once. Chat targets follow MLPerf
# Inference v5.0's server scenario (Llama 3.1 8B: TTFT 2 s, TPOT 100 ms; Llama 2 70B: TTFT 2 s; we
# keep TPOT 100 ms for the 70B chat tier); code completion is given a tighter TTFT (1.5 s) and a
# looser TBT (150 ms). No end-to-end target: the code trace's outputs reach 246 tokens at p99, so an
# e2e target for 99 % of requests would be loose or unattainable (assumptions, data/README.md).
CLASSES = {
    "chat-short": dict(model="llama-3.1-8b", shape="conv-short",
                       slo=dict(ttft_ms=2000, tbt_ms=100, percentile=99, attainment=0.99)),
    "chat-long": dict(model="llama-3.1-8b", shape="conv-long",
                      slo=dict(ttft_ms=2000, tbt_ms=100, percentile=99, attainment=0.99)),
    "chat-70b": dict(model="llama-3.1-70b", shape="conv-short",
                     slo=dict(ttft_ms=2000, tbt_ms=100, percentile=99, attainment=0.99)),
    "code-70b": dict(model="llama-3.1-70b", shape="code",
                     slo=dict(ttft_ms=1500, tbt_ms=150, percentile=99, attainment=0.99)),
}
NETWORK_MS = 70.0
"""Network allowance of the profile rows' TTFT targets: every route up to 70 ms RTT (within a continent,
and North America - Europe) can use every row (``plan profile estimate --network-ms 70``)."""
CHAT70B_SHARE_OF_SHORT = 1 / 3   # assumption: a third of short chats go to the 70B tier

# Demand
TOTAL_MEAN_RPS = 120.0           # daily mean over all classes and origins (assumption, sized so the fleet serves
                                 # the traces' length distributions at the p99 targets, eu on eu-central alone)
ORIGINS = {  # share of requests, UTC offset of local time in June, allowed regions (None = all)
    "na": dict(share=0.45, utc_offset=-5, allowed=None),
    "eu": dict(share=0.30, utc_offset=+2, allowed=["eu-central"]),
    "asia": dict(share=0.25, utc_offset=+8, allowed=None),
}
DIURNAL = {  # per class: (peak local hour, peak/trough ratio)
    "chat-short": (16.0, 2.5), "chat-long": (16.0, 2.5), "chat-70b": (16.0, 2.5), "code-70b": (14.0, 4.0),
}
# Same-continent RTT from an origin to a region (assumption, ms); other pairs from the paper table.
ORIGIN_CONTINENT = {"na": "US", "eu": "EU", "asia": "AP"}
INTRA_RTT_MS = {
    ("na", "us-east"): 25, ("na", "ca-central"): 25, ("na", "us-west"): 40,
    ("eu", "eu-central"): 15,
    ("asia", "ap-southeast"): 30, ("asia", "ap-northeast"): 40,
}
MAX_UTILIZATION = 0.9   # headroom beyond the classes' burst factors (0.8 before the arrivals tables)
SPOT_RATE = 0.02        # reclaims per spot VM-hour (assumption: about one per VM every two days)
FLEET_SCALE = 4         # every count above times this: the p99 default sized for the traces' bursts
                        # (code-70b's burst factor is about 4) needs about 4x the GPUs of a Poisson plan


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def default_shared() -> Path:
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def day_index() -> pd.DatetimeIndex:
    return pd.date_range(f"{DAY}T00:00:00Z", periods=SLOTS, freq="h")


def fmt_ts(ts: pd.Timestamp) -> str:
    return ts.strftime(TS_FMT)


def need(path: Path) -> Path:
    if not path.is_file():
        sys.exit(f"missing raw file: {path}")
    return path


# --------------------------------------------------------------------------------------------
# Time series: carbon and electricity price
# --------------------------------------------------------------------------------------------

def build_carbon(shared: Path) -> pd.DataFrame:
    """Hourly direct carbon intensity per region on DAY, read with the same code as ``plan data carbon``."""
    start = day_index()[0]
    end = start + pd.Timedelta(hours=SLOTS)
    sources = {region: need(shared / "carbon" / "electricitymaps-2023" / f"{r['zone']}.csv")
               for region, r in REGIONS.items()}
    df = carbon_table(sources, start, end, signal="direct")
    df["source"] = df["region"].map(lambda reg: f"{ATTR_CARBON}; zone {REGIONS[reg]['zone']}, direct intensity")
    return df[["timestamp", "region", "gco2_per_kwh", "source"]]


def build_prices(shared: Path) -> tuple[pd.DataFrame, int]:
    rows, clipped = [], 0
    idx = day_index()
    for region, r in REGIONS.items():
        df = pd.read_csv(need(shared / "energy-prices" / f"{r['zone']}.csv"))
        ts = pd.to_datetime(df["Datetime (UTC)"], utc=True)
        s = pd.Series(df["Price (USD/MWh)"].to_numpy(float), index=ts)
        s = s[~s.index.duplicated(keep="first")].reindex(idx)
        if s.isna().any():
            sys.exit(f"price {r['zone']}: missing hours on {DAY}")
        for t, v in s.items():
            src = f"{ATTR_PRICE}; zone {r['zone']}"
            if v < 0:
                clipped += 1
                src += f"; clipped from {v:.2f} to 0"
                v = 0.0
            rows.append((fmt_ts(t), region, round(float(v), 2), src))
    return pd.DataFrame(rows, columns=["timestamp", "region", "usd_per_mwh", "source"]), clipped


# --------------------------------------------------------------------------------------------
# GPU prices
# --------------------------------------------------------------------------------------------

def build_vm_offers(shared: Path) -> dict[tuple[str, str], dict]:
    """Per (region, GPU): the VM type behind the cheapest on-demand per-GPU price among the region's cloud
    regions, as a ``regions[].vms`` entry.

    Prices come from ``tools/prices.py`` (Azure VM price / GPUs; GCP GPU price plus its host VM share;
    outliers dropped there), times the VM's GPUs: USD per VM-hour on demand and, where the catalog lists
    one, on spot. VMs available: the region's GPU count (``REGIONS``, times ``FLEET_SCALE``) / GPUs per
    VM, on demand and the same number on spot (assumption), reclaimed ``SPOT_RATE`` times per spot
    VM-hour (assumption). Each entry's ``source`` names the catalog row.
    """
    table = gpu_prices(shared)
    out: dict[tuple[str, str], dict] = {}
    for region, r in REGIONS.items():
        for gpu in r["counts"]:
            cand = table[(table["gpu"] == gpu)
                         & pd.Series(list(zip(table["provider"], table["cloud_region"]))).isin(r["clouds"])]
            if cand.empty:
                continue
            best = cand.sort_values(["on_demand_usd_per_gpu_hour", "provider", "cloud_region"], kind="stable").iloc[0]
            m = re.search(r"\((\d+)x |x(\d+) GPU-only", best["source"])
            n = int(m.group(1) or m.group(2))
            vm = {"name": best["instance_type"], "gpu": gpu, "gpus": n,
                  "price_usd_per_hour": round(float(best["on_demand_usd_per_gpu_hour"]) * n, 4),
                  "count": -(-r["counts"][gpu] * FLEET_SCALE // n)}
            src = (f"{best['provider']} {best['instance_type']} {best['cloud_region']}, "
                   "anycloud-sh/catalog snapshot May 2026")
            if pd.notna(best["spot_usd_per_gpu_hour"]):
                vm |= {"spot_price_usd_per_hour": round(float(best["spot_usd_per_gpu_hour"]) * n, 4),
                       "spot_count": vm["count"], "spot_interruptions_per_hour": SPOT_RATE}
                src += f"; spot count and reclaim rate {SPOT_RATE}/h: assumptions"
            vm["source"] = src
            out[(region, gpu)] = vm
    return out


# --------------------------------------------------------------------------------------------
# Shapes and class mix from the Azure 2023 trace
# --------------------------------------------------------------------------------------------

def build_shapes(shared: Path) -> tuple[dict, dict, dict, dict, dict]:
    """Shapes (median input/output tokens, and the joint length distribution of each), class
    shares, and each shape subset's arrival burstiness, with the code of ``plan data shapes``
    (``--distribution``, ``--arrivals``)."""
    conv = load_trace(need(shared / "traces" / "azure-llm-2023" / "conv.csv"))
    code = load_trace(need(shared / "traces" / "azure-llm-2023" / "code.csv"))
    conv_buckets = [parse_bucket(f"conv-short:out<={CONV_SPLIT_OUT}"), parse_bucket(f"conv-long:out>{CONV_SPLIT_OUT}")]
    code_buckets = [parse_bucket("code:out>=0")]
    conv_sh = trace_shapes(conv, conv_buckets).set_index("class")
    code_sh = trace_shapes(code, code_buckets).set_index("class")
    dists = {"conv-short": trace_distribution(conv, conv_buckets, "conv-short"),
             "conv-long": trace_distribution(conv, conv_buckets, "conv-long"),
             "code": trace_distribution(code, code_buckets, "code")}
    arrivals = {"conv-short": trace_arrivals(conv, conv_buckets, "conv-short"),
                "conv-long": trace_arrivals(conv, conv_buckets, "conv-long"),
                "code": trace_arrivals(code, code_buckets, "code")}
    sh = pd.concat([conv_sh, code_sh])
    shapes = {name: dict(input_tokens=int(round(float(sh.at[name, "median_input_tokens"]))),
                         output_tokens=int(round(float(sh.at[name, "median_output_tokens"]))))
              for name in ("conv-short", "conv-long", "code")}
    n_all = len(conv) + len(code)
    n = sh["count"].astype(int)
    s_code, s_long, s_short = n["code"] / n_all, n["conv-long"] / n_all, n["conv-short"] / n_all
    shares = {
        "chat-short": s_short * (1 - CHAT70B_SHARE_OF_SHORT),
        "chat-long": s_long,
        "chat-70b": s_short * CHAT70B_SHARE_OF_SHORT,
        "code-70b": s_code,
    }
    gap = int(((conv.df["output_tokens"] > CONV_SPLIT_OUT) & (conv.df["output_tokens"] <= 320)).sum())
    stats = dict(n_conv=len(conv), n_code=len(code), n_conv_long=int(n["conv-long"]), conv_gap=gap)
    return shapes, shares, stats, dists, arrivals


# --------------------------------------------------------------------------------------------
# Demand
# --------------------------------------------------------------------------------------------

def diurnal(local_hour: np.ndarray, peak: float, ratio: float) -> np.ndarray:
    a = (ratio - 1.0) / (ratio + 1.0)
    return 1.0 + a * np.cos(2.0 * math.pi * (local_hour - peak) / 24.0)


def build_demand(shares: dict) -> pd.DataFrame:
    idx = day_index()
    mid_utc = np.arange(SLOTS) + 0.5
    rows = []
    for cls in CLASSES:
        peak, ratio = DIURNAL[cls]
        for origin, o in ORIGINS.items():
            local = (mid_utc + o["utc_offset"]) % 24.0
            rate = TOTAL_MEAN_RPS * o["share"] * shares[cls] * diurnal(local, peak, ratio)
            src = (f"assumed diurnal shape (peak {peak:02.0f}:00 local UTC{o['utc_offset']:+d}, "
                   f"peak/trough {ratio:g}) x Azure LLM inference trace 2023 class mix (see data/README.md)")
            for t, v in zip(idx, rate):
                rows.append((fmt_ts(t), cls, origin, round(float(v), 3), src))
    return pd.DataFrame(rows, columns=["timestamp", "class", "origin", "rate_rps", "source"])


# --------------------------------------------------------------------------------------------
# Profiles: the calibrated performance model, exactly as `plan profile estimate` runs it
# --------------------------------------------------------------------------------------------

def build_profiles(yaml_text: str, dists: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every profile row the scenario can use, from ``planner.perf.model`` via ``estimate_profiles``.

    The scenario document is parsed first so that the shapes, SLOs and RTTs the rows are computed
    for are the ones the planner will read (each shape at the tightest SLO of its classes, less the
    smallest RTT; see ``planner/profile_estimate.py``).
    """
    import yaml

    from planner.perf.estimate import estimate_profiles
    from planner.scenario.schema import ScenarioSpec

    spec = ScenarioSpec.model_validate(yaml.safe_load(yaml_text))
    norm = {k: d.assign(weight=d["weight"] / d["weight"].sum()) for k, d in dists.items()}
    table, _ = estimate_profiles(spec, None, distributions=norm, network_ms=NETWORK_MS)
    return table


# --------------------------------------------------------------------------------------------
# scenario.yaml (written by hand so that every fleet number carries its source as a comment)
# --------------------------------------------------------------------------------------------

def q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rtt_table(shared: Path) -> dict[str, dict[str, float]]:
    net = pd.read_csv(need(shared / "network" / "continent_rtt_ms.csv"))
    net = net[net["provider"] == "azure"]
    inter = {(a, b): float(v) for a, b, v in zip(net["from"], net["to"], net["rtt_ms"])}
    out = {}
    for origin in ORIGINS:
        oc = ORIGIN_CONTINENT[origin]
        out[origin] = {}
        for region in REGIONS:
            rc = CONTINENT[region]
            out[origin][region] = float(INTRA_RTT_MS[(origin, region)]) if rc == oc else inter[(oc, rc)]
    return out


def build_yaml(shapes: dict, offers: dict, rtt: dict) -> str:
    L = []
    a = L.append
    a("# Default scenario, generated by tools/build_default.py -- do not edit by hand.")
    a("# Every number's origin is documented in data/README.md; fleet prices carry it inline.")
    a("schema_version: 1")
    a("name: default-2023-06-15")
    a("description: " + q(
        "Embedded default: one day (2023-06-15, 24 hourly slots) of Llama 3.1 8B/70B serving for "
        "na/eu/asia users on six regions (US, Canada, Germany, Singapore, Japan) with A100-80GB, "
        "H100-80GB (calibrated on measurements), H200 and L4 (estimated from spec sheets) GPUs. "
        "Carbon: Electricity Maps 2023 via HewlettPackard/sustain-cluster; GPU prices: Azure and GCP "
        "catalogs (anycloud-sh/catalog, GCP host VM included); request shapes and class mix: Azure LLM "
        "inference trace 2023; performance: calibrated model (docs/performance-model.md). "
        "See data/README.md."))
    a("horizon:")
    a(f"  start: {q(DAY + 'T00:00:00Z')}")
    a("  slot_minutes: 60")
    a(f"  slots: {SLOTS}")
    a("gpu_types:  # memory: datasheets, see data/gpu_specs.csv")
    for gname in GPUS:
        a(f"  - {{name: {gname}, memory_gb: {gpu_spec(gname).memory_gb:g}}}")
    a("models:  # parameter counts: model cards, see data/model_specs.csv")
    for mname in MODELS:
        a(f"  - {{name: {mname}, params_billion: {model_spec(mname).params_b:g}}}")
    a("shapes:  # medians of the Azure LLM inference trace 2023 (conv split at 256 output tokens; code);")
    a("         # distribution: the joint lengths, 4 bins per octave (plan data shapes --distribution)")
    for sname, s in shapes.items():
        a(f"  - {{name: {sname}, input_tokens: {s['input_tokens']}, output_tokens: {s['output_tokens']}, "
          f"distribution: shape_{sname}.csv}}")
    a("classes:  # SLOs: assumptions for interactive chat / code completion, see data/README.md;")
    a("          # arrivals: burstiness of the shape's trace subset (plan data shapes --arrivals)")
    for cname, c in CLASSES.items():
        slo = ", ".join(f"{k}: {v}" for k, v in c["slo"].items())
        a(f"  - {{name: {cname}, model: {c['model']}, shape: {c['shape']}, slo: {{{slo}}}, "
          f"arrivals: arrivals_{c['shape']}.csv}}")
    a("regions:  # pue: assumption (data/README.md); vms: VM types rented whole, count: assumed availability")
    for rname, r in REGIONS.items():
        a(f"  - name: {rname}")
        a(f"    pue: {r['pue']}")
        a(f"    location: {q(r['location'] + '; grid zone ' + r['zone'])}")
        a("    vms:")
        for gname in GPUS:
            if gname not in r["counts"]:
                continue
            vm = offers[(rname, gname)]
            fields = ", ".join(f"{k}: {q(v) if k == 'source' else v}" for k, v in vm.items())
            a(f"      - {{{fields}}}")
    a("origins:  # rtt: network/continent_rtt_ms.csv azure rows across continents; same continent assumed")
    for oname, o in ORIGINS.items():
        a(f"  - name: {oname}")
        a("    rtt_ms: {" + ", ".join(f"{r}: {v:g}" for r, v in rtt[oname].items()) + "}")
        if o["allowed"] is not None:
            a("    allowed_regions: [" + ", ".join(o["allowed"]) + "]  # data residency")
    a("profiles: profiles.csv")
    a("carbon_intensity: carbon.csv")
    a("demand: demand.csv")
    a("electricity_price: electricity_price.csv")
    a("options:")
    a("  objective: carbon")
    a(f"  max_utilization: {MAX_UTILIZATION}")
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------------------------
# Checks and summary
# --------------------------------------------------------------------------------------------

def check_tables(profiles: pd.DataFrame, series: dict[str, tuple[pd.DataFrame, list[str]]]) -> None:
    key = ["model", "gpu", "tp", "pp", "freq_mhz", "shape"]
    assert not profiles.duplicated(key).any(), "duplicate profile rows"
    assert (profiles["idle_power_w"] > 0).all()
    assert (profiles["busy_power_w"] >= profiles["idle_power_w"]).all()
    assert (profiles["active_power_w"] >= profiles["idle_power_w"]).all()
    assert (profiles["busy_power_w"] >= profiles["active_power_w"]).all()
    assert (profiles["max_rps"] > 0).all()
    idle = profiles.groupby(["model", "gpu", "tp", "pp", "freq_mhz"])["idle_power_w"].nunique()
    assert (idle == 1).all(), "idle power differs across shapes"
    tdp = profiles["gpu"].map(lambda g: gpu_spec(g).tdp_w) * profiles["tp"] * profiles["pp"]
    assert (profiles["busy_power_w"] <= tdp + 1e-6).all(), "busy power above TDP"
    for k, grp in profiles.sort_values("freq_mhz").groupby(["model", "gpu", "tp", "pp", "shape"]):
        assert grp["max_rps"].is_monotonic_increasing, f"max_rps not increasing with clock: {k}"
        assert grp["busy_power_w"].is_monotonic_increasing, f"busy power not increasing with clock: {k}"
    expected = [fmt_ts(t) for t in day_index()]
    for name, (df, keys) in series.items():
        for k, grp in df.groupby(keys):
            assert list(grp["timestamp"]) == expected, f"{name} {k}: not 24 hourly points"


def capacity_check(profiles: pd.DataFrame, demand: pd.DataFrame, arrivals: dict) -> dict:
    """Rough capacity bound (see module docstring): each class's demand counted ``burst factor`` times
    (its arrivals table at its level, ``planner.scenario.arrivals``), as ``replica_capacity`` does."""
    from planner.scenario.arrivals import burst_factor
    best = {}  # (class, gpu) -> best SLO-feasible max_rps per GPU (ignoring RTT), all clocks
    for cname, c in CLASSES.items():
        slo = c["slo"]
        p = profiles[(profiles["model"] == c["model"]) & (profiles["shape"] == c["shape"])]
        ok = (p["ttft_ms"] <= slo["ttft_ms"]) & (p["tbt_ms"] <= slo["tbt_ms"])
        p = p[ok]
        for gname in GPUS:
            pg = p[p["gpu"] == gname]
            best[(cname, gname)] = float((pg["max_rps"] / (pg["tp"] * pg["pp"])).max()) if len(pg) else 0.0

    def cap(cname, regions):
        return sum(MAX_UTILIZATION * best[(cname, g)] * REGIONS[r]["counts"].get(g, 0) * FLEET_SCALE
                   for r in regions for g in GPUS)

    all_regions = list(REGIONS)
    d = demand.pivot_table(index="timestamp", columns="class", values="rate_rps", aggfunc="sum")
    beta = {}
    for cname, c in CLASSES.items():
        a = arrivals[c["shape"]]
        curve = a[(a["weighting"] == "request") & (a["quantile"] == c["slo"]["attainment"])]
        beta[cname] = burst_factor(curve, d[cname].to_numpy(), c["slo"]["ttft_ms"] / 1000.0)
    frac = sum(beta[c] * d[c] / cap(c, all_regions) for c in CLASSES)
    deu = demand[demand["origin"] == "eu"].pivot_table(index="timestamp", columns="class",
                                                        values="rate_rps", aggfunc="sum")
    eu_regions = ORIGINS["eu"]["allowed"]
    frac_eu = sum(beta[c] * deu[c] / cap(c, eu_regions) for c in CLASSES)
    return dict(best=best, total=d.sum(axis=1), frac=frac, frac_eu=frac_eu,
                cap_all={c: cap(c, all_regions) for c in CLASSES})


def summarize(profiles, carbon, prices_ts, demand, cc, shapes, shares, stats, clipped):
    print(f"shapes: {shapes}")
    print("class shares: " + ", ".join(f"{k}={v:.3f}" for k, v in shares.items()) +
          f"  (conv {stats['n_conv']}, long {stats['n_conv_long']}, in gap 257-320: {stats['conv_gap']}; "
          f"code {stats['n_code']})")
    print(f"electricity prices clipped at 0: {clipped}")
    print("\nper model/shape/GPU at max clock: best max_rps per GPU, energy per request (J, busy, no PUE)")
    top = profiles.copy()
    top["rps_per_gpu"] = top["max_rps"] / (top["tp"] * top["pp"])
    top["j_per_req"] = top["busy_power_w"] / top["max_rps"]
    fm = top["gpu"].map(lambda g: gpu_spec(g).max_clock_mhz)
    for (m, s, g), grp in top[top["freq_mhz"] == fm].groupby(["model", "shape", "gpu"], sort=False):
        b = grp.loc[grp["rps_per_gpu"].idxmax()]
        print(f"  {m:14s} {s:10s} {g:10s} tp{b.tp} pp{b.pp} rps/GPU={b.rps_per_gpu:7.3f} J/req={b.j_per_req:7.1f} "
              f"ttft={b.ttft_ms:6.0f} tbt={b.tbt_ms:5.1f} W={b.busy_power_w:6.0f} err={b.expected_error}")
    print("\ncarbon mean per region (gCO2/kWh): " +
          ", ".join(f"{r}={v:.0f}" for r, v in carbon.groupby("region", sort=False)["gco2_per_kwh"].mean().items()))
    print("price mean per region (USD/MWh): " +
          ", ".join(f"{r}={v:.0f}" for r, v in prices_ts.groupby("region", sort=False)["usd_per_mwh"].mean().items()))
    print("\nbest SLO-feasible req/s per GPU (any clock, RTT ignored): ")
    for c in CLASSES:
        print(f"  {c:11s} " + "  ".join(f"{g}={cc['best'][(c, g)]:.3f}" for g in GPUS) +
              f"  | fleet capacity if alone: {cc['cap_all'][c]:.0f} req/s")
    tot = cc["total"]
    print(f"\ndemand total: mean {tot.mean():.1f}, peak {tot.max():.1f} req/s at {tot.idxmax()}")
    print(f"fleet fraction needed (sum_c d_c / cap_c): max {cc['frac'].max():.2f}, "
          f"mean {cc['frac'].mean():.2f}; eu on eu-central only: max {cc['frac_eu'].max():.2f}")
    print("GPUs: " + ", ".join(f"{g}={sum(r['counts'].get(g, 0) for r in REGIONS.values()) * FLEET_SCALE}" for g in GPUS))


# --------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=default_shared(), help="raw shared data folder")
    ap.add_argument("--out", type=Path, default=HERE.parent / "data" / "default")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    shared: Path = args.shared.resolve()
    if not (shared / "README.md").is_file():
        sys.exit(f"shared data not found at {shared} (use --shared DIR)")

    carbon = build_carbon(shared)
    prices_ts, clipped = build_prices(shared)
    offers = build_vm_offers(shared)
    for rname, r in REGIONS.items():
        for gname in r["counts"]:
            if (rname, gname) not in offers:
                sys.exit(f"no price for {gname} in {rname}")
    shapes, shares, stats, dists, arrivals = build_shapes(shared)
    demand = build_demand(shares)
    rtt = rtt_table(shared)
    yaml_text = build_yaml(shapes, offers, rtt)
    profiles = build_profiles(yaml_text, dists)

    check_tables(profiles, {
        "carbon": (carbon, ["region"]),
        "electricity_price": (prices_ts, ["region"]),
        "demand": (demand, ["class", "origin"]),
    })

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "scenario.yaml").write_text(yaml_text)
    opts = dict(index=False, lineterminator="\n")
    (out / "profiles.csv").write_text(profiles_to_csv(profiles))
    carbon.to_csv(out / "carbon.csv", float_format="%.10g", **opts)
    demand.to_csv(out / "demand.csv", float_format="%.10g", **opts)
    prices_ts.to_csv(out / "electricity_price.csv", float_format="%.10g", **opts)
    for sname, dist in dists.items():
        (out / f"shape_{sname}.csv").write_text(table_csv(dist))
    for sname, arr in arrivals.items():
        (out / f"arrivals_{sname}.csv").write_text(table_csv(arr))

    if not args.quiet:
        cc = capacity_check(profiles, demand, arrivals)
        summarize(profiles, carbon, prices_ts, demand, cc, shapes, shares, stats, clipped)
        print(f"\nwrote {out}: scenario.yaml, profiles.csv ({len(profiles)} rows), carbon.csv ({len(carbon)}), "
              f"demand.csv ({len(demand)}), electricity_price.csv ({len(prices_ts)})")
    # the week example shares this folder's tables (tools/build_week.py)
    import build_week

    argv_week = ["--shared", str(shared), "--out", str(out)] + (["--quiet"] if args.quiet else [])
    return build_week.main(argv_week)


if __name__ == "__main__":
    raise SystemExit(main())

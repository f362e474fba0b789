"""Per-GPU-hour prices (on-demand and spot) from the shared cloud catalogs.

``gpu_prices(shared)`` reads ``prices/{azure,gcp,lambda}_gpu_vms.csv`` (SkyPilot-format catalogs from
github anycloud-sh/catalog, snapshot May 2026, public list prices in USD per instance-hour) and
returns one row per (provider, cloud_region, gpu) with the price of one GPU-hour *including its
share of the host VM*:

    provider, cloud_region, gpu, on_demand_usd_per_gpu_hour, spot_usd_per_gpu_hour,
    instance_type, source

Derivation
----------
Azure and Lambda rows are whole VMs: ``per GPU = Price / AcceleratorCount`` (spot: ``SpotPrice /
AcceleratorCount``). Example: ``azure_gpu_vms.csv`` line ``Standard_ND96amsr_A100_v4,A100-80GB,8,96,
1800,A100-80GB,32.77,8.5202,eastus,V2`` gives 32.77 / 8 = 4.09625 on-demand and 8.5202 / 8 = 1.06503
spot per A100-80GB-hour in eastus. Azure NV-series rows (visualisation VMs) and fractional-GPU rows
are left out; Lambda lists no spot prices.

GCP rows give the **GPU-only** price (no ``InstanceType``, no vCPUs, no memory): an L4, A100, H100,
H200 or B200 on GCP only exists inside an accelerator-optimized machine type whose vCPUs and memory
are billed on top. The shared catalog has no host rows, so the host price is rebuilt from the
machine types' public rates, checked against the full GCP catalog of the same upstream
(anycloud-sh/catalog ``gcp/vms.csv``, whose rows give the whole VM price):

==============  ===========================  ====================================================
GPU             host machine type (n GPUs)    host price at the reference region (USD/h)
==============  ===========================  ====================================================
L4              g2-standard-{4,24,48,96}      G2 rates 0.024988/vCPU + 0.002927/GiB, us-central1
                (1, 2, 4, 8 GPUs)             (g2-standard-96: 96 vCPU, 384 GiB -> 3.52301; check:
                                              vms.csv 8.00333 - 8 x 0.56004 = 3.52301)
A100 (40GB)     a2-highgpu-{1,2,4,8}g,        A2 rates 0.031611/vCPU + 0.004237/GiB, us-central1
                a2-megagpu-16g                (12 vCPU + 85 GiB per GPU -> 0.73948; check:
                                              a2-highgpu-1g 3.67339 - 2.93391)
A100-80GB       a2-ultragpu-{1,2,4,8}g        A2 rates, 12 vCPU + 170 GiB per GPU -> 1.09962
                                              (check: a2-ultragpu-1g us-east5 5.52382 - 4.42420)
H100            a3-highgpu-{1,2,4,8}g         1.18251 per GPU (26 vCPU + 234 GiB), us-east4
                                              (a3-highgpu-1g 10.97906 - 9.79655)
H100-MEGA,      a3-megagpu-8g, a3-ultragpu-   no host rate read; the a3-highgpu host (1.18251 per
H200, B200      8g, a4-highgpu-8g             GPU) is used as a proxy, unscaled (a lower bound:
                                              these hosts have as many or more vCPUs and memory)
==============  ===========================  ====================================================

GCP charges the same regional premium on the host as on the GPU (e.g. g2-standard-96 host in
europe-west3 = 1.1767 x us-central1, L4 GPU-only = 1.1800 x; asia-southeast1 1.2337 x for both),
so the host price of a region is the reference host price x (region's GPU-only price / reference
region's GPU-only price), except for the proxy hosts. Then

    per GPU = (GPU-only price x n + host price) / n

and the spot price uses the GPU's own spot discount for the host too:
``spot per GPU = spot GPU-only x (1 + host per GPU / on-demand GPU-only)``. Worked example
(L4, us-central1, 8 GPUs, catalog row ``L4,8,...,us-central1,us-central1-a,4.48032,1.8744``):
host 3.52301, per GPU = (4.48032 + 3.52301) / 8 = 1.00042; spot = 1.8744 / 8 x (1 + 0.44038 / 0.56004)
= 0.42167.

Zones: GCP lists one row per zone; the cheapest zone of the region is used (zones of a region
normally have the same price).

Choice of instance: where several instance types give the same (provider, region, gpu), the one
with the most GPUs is used (the 8-GPU NVLink servers the profiles' TP up to 8 need; on GCP the
per-GPU GPU price does not depend on the count), ties broken by the lower on-demand per-GPU price.
``gpu_prices(shared, all_instances=True)`` returns every instance type instead. Note for L4: the
1-GPU g2-standard-4 host is much smaller per GPU (4 vCPU instead of 12), so L4 on g2-standard-4 is
about 0.71 USD/GPU-h in us-central1 against 1.00 on g2-standard-96.

GPU names: ours are A100-40GB, A100-80GB, H100-80GB, H100-NVL (Azure NC H100 v5: H100 NVL 94 GB),
H200, B200, GH200, L4, A10, A6000, MI300X. Older GPUs (T4, V100, P4, P100, K80, M60, MI25) and TPUs
are left out.

Outliers
--------
The catalog mixes SKUs: several GCP GPU-only prices are 2-3x below the rest of the same GPU (e.g.
H100 4.20076 in us-central1 against 9.79655 in us-east4, while the full-VM a3-highgpu-1g price is
10.97906 in both; A100-80GB 1.84620 in us-central1 while a2-ultragpu-1g costs 5.0277 there), and
their spot price is then close to or above the on-demand price. Rules, in this order:

1. GCP: a GPU-only on-demand price whose spot price is more than 0.6 x it (a spot discount below
   40 %; GCP's documented spot discounts are 60-91 %) is inconsistent: the row is dropped.
2. Every provider: per (provider, gpu), rows whose on-demand per-GPU price is below 0.5 x or above
   2 x the median of the remaining rows are dropped.
3. A spot price at or above the on-demand price (Azure H200 lists SpotPrice = Price) is not a spot
   price: spot is set to NaN and the source says so.

``price_outliers(shared)`` lists the dropped rows with the rule that dropped them. The output is
deterministic: sorted by provider, cloud_region, gpu (and instance_type), prices rounded to 5
decimals.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ["provider", "cloud_region", "gpu", "on_demand_usd_per_gpu_hour", "spot_usd_per_gpu_hour",
           "instance_type", "source"]
CATALOG = "anycloud-sh/catalog snapshot May 2026"

AZURE_GPUS = {"A100-80GB": "A100-80GB", "A100": "A100-40GB", "H100": "H100-80GB", "H200": "H200",
              "MI300X": "MI300X", "A10": "A10"}
LAMBDA_GPUS = {"A100-80GB": "A100-80GB", "A100": "A100-40GB", "H100": "H100-80GB", "B200": "B200",
               "GH200": "GH200", "A10": "A10", "A6000": "A6000"}
GCP_GPUS = {"L4": "L4", "A100": "A100-40GB", "A100-80GB": "A100-80GB", "H100": "H100-80GB",
            "H100-MEGA": "H100-80GB", "H200": "H200", "B200": "B200"}

G2 = (0.024988, 0.002927)   # USD per vCPU-hour, per GiB-hour, us-central1 (check in module docstring)
A2 = (0.031611, 0.004237)
A3_HOST_PER_GPU = 1.18251   # us-east4: a3-highgpu-1g 10.97906 - H100 GPU-only 9.79655


def _g2(n: int) -> tuple[str, float]:
    vcpu, mem = {1: (4, 16), 2: (24, 96), 4: (48, 192), 8: (96, 384)}[n]
    name = {1: "g2-standard-4", 2: "g2-standard-24", 4: "g2-standard-48", 8: "g2-standard-96"}[n]
    return name, vcpu * G2[0] + mem * G2[1]


def _a2(n: int) -> tuple[str, float]:
    if n == 16:
        return "a2-megagpu-16g", 96 * A2[0] + 1360 * A2[1]
    return f"a2-highgpu-{n}g", n * (12 * A2[0] + 85 * A2[1])


def _a2u(n: int) -> tuple[str, float]:
    return f"a2-ultragpu-{n}g", n * (12 * A2[0] + 170 * A2[1])


def _a3(n: int) -> tuple[str, float]:
    return f"a3-highgpu-{n}g", n * A3_HOST_PER_GPU


# GCP accelerator -> (host function, reference region, scale host by the regional GPU price ratio)
GCP_HOSTS = {
    "L4": (_g2, "us-central1", True),
    "A100": (_a2, "us-central1", True),
    "A100-80GB": (_a2u, "us-east5", True),
    "H100": (_a3, "us-east4", True),
    "H100-MEGA": (lambda n: ("a3-megagpu-8g", n * A3_HOST_PER_GPU), None, False),
    "H200": (lambda n: ("a3-ultragpu-8g", n * A3_HOST_PER_GPU), None, False),
    "B200": (lambda n: ("a4-highgpu-8g", n * A3_HOST_PER_GPU), None, False),
}

GCP_SPOT_MAX_RATIO = 0.6
MEDIAN_FACTOR = 2.0


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"price catalog not found: {path}")
    return pd.read_csv(path)


def _azure(shared: Path) -> pd.DataFrame:
    az = _read(shared / "prices" / "azure_gpu_vms.csv")
    az = az[az["AcceleratorName"].isin(list(AZURE_GPUS)) & az["Price"].notna() & (az["AcceleratorCount"] >= 1)]  # fractional GPUs (NV A10 v5 partitions) left out
    rows = []
    for r in az.itertuples(index=False):
        if r.InstanceType.startswith("Standard_NV"):
            continue  # NV-series: visualisation VMs (A10 v5), not the NC compute series
        gpu = AZURE_GPUS[r.AcceleratorName]
        if gpu == "H100-80GB" and r.InstanceType.startswith("Standard_NC"):
            gpu = "H100-NVL"   # NC H100 v5 carries H100 NVL (94 GB), not the 80 GB SXM part
        n = int(r.AcceleratorCount)
        rows.append(dict(provider="azure", cloud_region=r.Region, gpu=gpu, n=n, instance_type=r.InstanceType,
                         od=float(r.Price) / n, spot=float(r.SpotPrice) / n if pd.notna(r.SpotPrice) else np.nan,
                         source=f"azure {r.InstanceType} ({n}x {r.AcceleratorName}) {r.Region}: VM price "
                                f"{r.Price:g} USD/h / {n} GPUs"))
    return pd.DataFrame(rows)


def _lambda(shared: Path) -> pd.DataFrame:
    la = _read(shared / "prices" / "lambda_gpu_vms.csv")
    la = la[la["AcceleratorName"].isin(list(LAMBDA_GPUS)) & la["Price"].notna() & (la["AcceleratorCount"] >= 1)]
    rows = []
    for r in la.itertuples(index=False):
        n = int(r.AcceleratorCount)
        rows.append(dict(provider="lambda", cloud_region=r.Region, gpu=LAMBDA_GPUS[r.AcceleratorName], n=n,
                         instance_type=r.InstanceType, od=float(r.Price) / n,
                         spot=float(r.SpotPrice) / n if pd.notna(r.SpotPrice) else np.nan,
                         source=f"lambda {r.InstanceType} ({n}x {r.AcceleratorName}) {r.Region}: VM price "
                                f"{r.Price:g} USD/h / {n} GPUs"))
    return pd.DataFrame(rows)


def _gcp(shared: Path) -> tuple[pd.DataFrame, list[dict]]:
    g = _read(shared / "prices" / "gcp_gpu_vms.csv")
    g = g[g["AcceleratorName"].isin(list(GCP_GPUS)) & g["Price"].notna() & (g["AcceleratorCount"] >= 1)].copy()
    g = g.sort_values(["AcceleratorName", "AcceleratorCount", "Region", "Price", "AvailabilityZone"], kind="mergesort")
    g = g.drop_duplicates(["AcceleratorName", "AcceleratorCount", "Region"], keep="first")  # cheapest zone
    dropped: list[dict] = []
    rows = []
    for r in g.itertuples(index=False):
        acc, n = r.AcceleratorName, int(r.AcceleratorCount)
        gpu_od, gpu_spot = float(r.Price) / n, (float(r.SpotPrice) / n if pd.notna(r.SpotPrice) else np.nan)
        host_fn, ref_region, scale = GCP_HOSTS[acc]
        try:
            host_name, host_ref = host_fn(n)
        except KeyError:
            continue  # no host machine type with that GPU count
        base = dict(provider="gcp", cloud_region=r.Region, gpu=GCP_GPUS[acc], n=n, instance_type=host_name)
        if np.isfinite(gpu_spot) and gpu_spot > GCP_SPOT_MAX_RATIO * gpu_od:
            dropped.append(dict(base, od=gpu_od, spot=gpu_spot,
                                reason=f"GPU-only on-demand {gpu_od:.5f} USD/h with spot {gpu_spot:.5f} "
                                       f"(> {GCP_SPOT_MAX_RATIO:g} x on-demand): inconsistent SKU"))
            continue
        rows.append(dict(base, acc=acc, zone=r.AvailabilityZone, gpu_od=gpu_od, gpu_spot=gpu_spot,
                         host_ref=host_ref, ref_region=ref_region, scale=scale))
    df = pd.DataFrame(rows)
    out = []
    for r in df.to_dict("records"):
        host = r["host_ref"]
        how = "unscaled proxy host (a3-highgpu rate)"
        if r["scale"]:
            ref = df[(df["acc"] == r["acc"]) & (df["n"] == r["n"]) & (df["cloud_region"] == r["ref_region"])]
            if ref.empty:
                continue
            factor = r["gpu_od"] / float(ref["gpu_od"].iloc[0])
            host *= factor
            how = f"reference {r['ref_region']} host x regional GPU price ratio {factor:.4f}"
        n = r["n"]
        od = (r["gpu_od"] * n + host) / n
        spot = r["gpu_spot"] * (1 + host / n / r["gpu_od"]) if np.isfinite(r["gpu_spot"]) else np.nan
        out.append(dict(provider="gcp", cloud_region=r["cloud_region"], gpu=r["gpu"], n=n,
                        instance_type=r["instance_type"], od=od, spot=spot, cmp=r["gpu_od"],
                        source=f"gcp {r['acc']} x{n} GPU-only {r['gpu_od'] * n:.5f} USD/h ({r['zone']}) + host "
                               f"{r['instance_type']} {host:.5f} USD/h ({how}), / {n} GPUs"))
    return pd.DataFrame(out), dropped


def _all(shared: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    shared = Path(shared)
    gcp, dropped = _gcp(shared)
    df = pd.concat([_azure(shared), gcp, _lambda(shared)], ignore_index=True)
    # rule 2: far from the median of the same (provider, gpu); on GCP the GPU-only price is compared
    # (the SKU mix is in the GPU price; the host share would blur it)
    df["cmp"] = df["cmp"].where(df["cmp"].notna(), df["od"]) if "cmp" in df else df["od"]
    keep = np.ones(len(df), bool)
    for (prov, gpu), idx in df.groupby(["provider", "gpu"]).groups.items():
        med = float(df.loc[idx, "cmp"].median())
        for i in idx:
            v = float(df.at[i, "cmp"])
            if v < med / MEDIAN_FACTOR or v > med * MEDIAN_FACTOR:
                keep[df.index.get_loc(i)] = False
                dropped.append(dict(provider=prov, cloud_region=df.at[i, "cloud_region"], gpu=gpu, n=df.at[i, "n"],
                                    instance_type=df.at[i, "instance_type"], od=v, spot=df.at[i, "spot"],
                                    reason=f"{'GPU-only ' if prov == 'gcp' else ''}on-demand {v:.5f} USD/GPU-h "
                                           f"outside [{1 / MEDIAN_FACTOR:g}, {MEDIAN_FACTOR:g}] x the {prov} {gpu} "
                                           f"median {med:.5f}"))
    df = df[keep].copy()
    # rule 3: spot at or above on-demand is no spot price
    bad = df["spot"].notna() & (df["spot"] >= df["od"] - 1e-12)
    df.loc[bad, "source"] = df.loc[bad, "source"] + "; catalog spot price >= on-demand, so spot left empty"
    df.loc[bad, "spot"] = np.nan
    df["source"] = df["source"] + f" ({CATALOG})."
    out = pd.DataFrame(dropped)
    if not out.empty:
        out = out.sort_values(["provider", "cloud_region", "gpu", "instance_type"], kind="mergesort")
        out = out.rename(columns={"od": "on_demand_usd_per_gpu_hour", "spot": "spot_usd_per_gpu_hour"})
        out = out.reset_index(drop=True)
    return df, out


def gpu_prices(shared: str | Path, all_instances: bool = False) -> pd.DataFrame:
    """Per (provider, cloud_region, gpu): USD per GPU-hour on-demand and spot (NaN if none).

    See the module docstring for the derivation, the GCP host rule and the outlier rules.
    ``all_instances=True`` keeps one row per instance type instead of choosing one.
    """
    df, _ = _all(Path(shared))
    df = df.copy()
    df["od"] = df["od"].round(5)
    df["spot"] = df["spot"].round(5)
    if not all_instances:
        df = df.sort_values(["provider", "cloud_region", "gpu", "n", "od", "instance_type"],
                            ascending=[True, True, True, False, True, True], kind="mergesort")
        df = df.drop_duplicates(["provider", "cloud_region", "gpu"], keep="first")
    else:
        # identical rows (Azure NC24/48/96 give the same per-GPU price) are kept: they are distinct instances
        df = df.drop_duplicates(["provider", "cloud_region", "gpu", "instance_type"], keep="first")
    df = df.rename(columns={"od": "on_demand_usd_per_gpu_hour", "spot": "spot_usd_per_gpu_hour"})
    df = df.sort_values(["provider", "cloud_region", "gpu", "instance_type"], kind="mergesort")
    return df[COLUMNS].reset_index(drop=True)


def price_outliers(shared: str | Path) -> pd.DataFrame:
    """The catalog rows left out of :func:`gpu_prices`, each with the rule that dropped it (``reason``)."""
    return _all(Path(shared))[1]


if __name__ == "__main__":  # pragma: no cover
    import sys

    here = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    p = gpu_prices(Path(sys.argv[1]) if len(sys.argv) > 1 else here)
    with pd.option_context("display.width", 250, "display.max_rows", 500, "display.max_colwidth", 60):
        print(p.drop(columns="source").to_string())

#!/usr/bin/env python3
"""Prints the tables of scripts/mix_job.sh from the summaries and torch_peer rows it wrote in DIR."""
import glob
import json
import os
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def peers(d):
    print("| version | run | ms/pixel | vs ORT fp32 | vs torch bf16 |")
    print("|---|---|---:|---:|---:|")
    for version in ("v1.1", "v2"):
        rows = []
        for run in ("ort_fp32", "native_bf16", "native_int8"):
            rows.append((run.replace("_", " "),
                         load(f"{d}/job_peers_{version}_{run}.json")["ms_per_pixel"]))
        for r in load(f"{d}/torch_{version}.json")["rows"]:
            rows.append((f"torch {r['precision']}" + (" autocast" if r["precision"] == "bf16" else ""),
                         r["ms_per_pixel"]))
        ort = rows[0][1]
        torch_bf16 = dict(rows)["torch bf16 autocast"]
        for name, ms in rows:
            print(f"| {version} | {name} | {ms:.2f} | {ort / ms:.2f}x | {torch_bf16 / ms:.2f}x |")


def job_against_engine(d):
    print("| run | tile | wall s | engine s | wall over engine | outside the engine |")
    print("|---|---:|---:|---:|---:|---:|")
    for path in sorted(glob.glob(f"{d}/job_job_*.json")):
        summary = load(path)
        name = os.path.basename(path)[8:-5]
        for i, tile in enumerate(summary["tiles"]):
            engine_s = tile["stages"]["engine_ms"] / 1e3
            print(f"| {name} | {i + 1} | {tile['seconds']:.2f} | {engine_s:.2f} | "
                  f"{tile['seconds'] / engine_s:.3f} | {tile['seconds'] - engine_s:.2f} s |")
        engine_s = summary["stages"]["engine_ms"] / 1e3
        print(f"| {name} | job | {summary['seconds']:.2f} | {engine_s:.2f} | "
              f"{summary['seconds'] / engine_s:.3f} | {summary['seconds'] - engine_s:.2f} s |")


def two_cores(d):
    print("| run | single:1 ms/pixel | core (2 workers) ms/pixel | speed-up | of 2x |")
    print("|---|---:|---:|---:|---:|")
    for path in sorted(glob.glob(f"{d}/job_cores_*_single.json")):
        one = load(path)
        two = load(path.replace("_single.json", "_core.json"))
        name = os.path.basename(path)[10:-12]
        speedup = one["ms_per_pixel"] / two["ms_per_pixel"]
        print(f"| {name} | {one['ms_per_pixel']:.2f} | {two['ms_per_pixel']:.2f} | "
              f"{speedup:.2f}x | {50 * speedup:.1f} % |")


def main(d):
    for title, table in (("Peers, one core, -b 256", peers),
                         ("The job against the engine, single:1", job_against_engine),
                         ("Two cores", two_cores)):
        print(f"\n### {title}\n")
        table(d)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")

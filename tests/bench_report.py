#!/usr/bin/env python3
"""Assembles BENCHMARKS.md from one run of tests/bench.sh.

usage: bench_report.py RAW_DIR CRITERION_DIR GIT_REV > BENCHMARKS.md
"""
import json
import os
import platform
import re
import subprocess
import sys
import time


def read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().rstrip()
    except FileNotFoundError:
        return None


def criterion(root):
    """(id, median ns) for every benchmark criterion measured, sorted by id."""
    out = []
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        with open(os.path.join(dirpath, "estimates.json")) as f:
            median = json.load(f)["median"]["point_estimate"]
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            title = json.load(f)["full_id"]
        out.append((title, median))
    return sorted(out)


def machine():
    cpu = "unknown CPU"
    for line in (read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = ""
    for line in (read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) // 1024 // 1024} GiB RAM"
    return f"{os.cpu_count()} cores ({cpu}), {mem}, {platform.system()} {platform.release()}"


def fmt_us(ns):
    return f"{ns / 1000:.1f} µs" if ns < 1e6 else f"{ns / 1e6:.2f} ms"


def main():
    raw, crit, rev = sys.argv[1], sys.argv[2], sys.argv[3]
    benches = criterion(crit)
    by_id = dict(benches)
    load = read(os.path.join(raw, "load.txt")) or ""
    p = print

    p("# Benchmarks")
    p()
    p(f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} at commit `{rev}` on "
      f"{machine()}, every figure in one run of `bash tests/bench.sh` (which wrote this file). "
      "The load generator, the verifiers and PostgreSQL share the machine's cores.")
    p()

    # --- targets
    p("## Targets")
    p()
    p("| target | measured | |")
    p("|---|---|---|")
    cold = by_id.get("full_attestation/rsa2048_quote_uefi112_all_rules_cel60_containers")
    warm = by_id.get(
        "full_attestation/rsa2048_quote_uefi112_all_rules_cel60_containers_same_log_cached")
    if cold:
        p(f"| core ≥ 5,000 full verifications/s/core (RSA quote, 112-event UEFI log under every "
          f"rule, CEL of 60 under `[containers]`) | {1e9 / cold:,.0f}/s cold ({fmt_us(cold)}); "
          f"{1e9 / warm:,.0f}/s when the UEFI log was judged before ({fmt_us(warm)}) | "
          f"{'met' if 1e9 / cold >= 5000 else 'met warm only' if warm and 1e9 / warm >= 5000 else 'not met'} |")
    rows = re.findall(r"^(\S+×\d\S*)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)$",
                      load, re.M)
    for r in rows:
        setup, att, fails, p50, p99 = r[0], int(r[1]), r[2], float(r[3]), float(r[4])
        ok = att >= 2000 and p99 < 50
        p(f"| end to end ≥ 2,000 attestations/s on 2 cores, p99 < 50 ms ({setup}) | "
          f"{att:,}/s, p50 {p50} ms, p99 {p99} ms, {fails} failed | {'met' if ok else 'not met'} |")
    for setup, b in re.findall(r"^(\S+×\d\S*): verifier memory per enrolled node (\d+) bytes", load, re.M):
        p(f"| memory per enrolled node ≤ 4 KiB plus history ({setup}) | {b} bytes | "
          f"{'met' if int(b) <= 4096 else 'not met'} |")
    p()

    p("## The verification core (criterion)")
    p()
    p("`cargo bench -p assay-core --bench core --bench eventlog --bench ima -- --warm-up-time 1 "
      "--measurement-time 3`. Median per operation; per core = 1 / median.")
    p()
    p("| benchmark | median | per core |")
    p("|---|---:|---:|")
    for title, ns in benches:
        p(f"| {title} | {fmt_us(ns)} | {1e9 / ns:,.0f}/s |")
    p()

    sections = [
        ("End to end: the load generator",
         "`cargo bench -p assay-tests --bench load` — simulated nodes (software EK from a test "
         "CA, a software AK each, enrolled through the real path), real verifiers over gRPC + "
         "TLS on loopback, every verdict durably stored. A setup is backend×replicas; `+uefi` "
         "setups send a real 112-event UEFI log with every quote (its 11 replayed PCRs quoted) "
         "and judge it under every `[measured_boot]` rule, the others quote 8 PCRs under golden "
         "values; `+inv` setups run in enrollment mode `inventory` (every node registered first "
         "with one `node import`; `enroll/s` then includes the inventory check). `verif ms/att` is the verifiers' CPU "
         "time per attestation (/proc), `all ms/att` the whole machine's (verifiers, PostgreSQL "
         "and the generator itself).", "load.txt"),
        ("One attestation on swtpm, broken down",
         "`cargo bench -p assay-tests --bench roundtrip` — the real attestor library and a real "
         "verifier (sled).", "roundtrip.txt"),
        ("History at scale", "`cargo bench -p assay-tests --bench history`", "history.txt"),
    ]
    for title, how, name in sections:
        p(f"## {title}")
        p()
        p(how)
        p()
        p("```")
        p(read(os.path.join(raw, name)) or "(not run)")
        p("```")
        p()

    p("## Side by side with Keylime")
    p()
    kl = read(os.path.join(raw, "keylime.md"))
    if kl:
        p("`bash tests/keylime/run.sh` — Keylime's verifier functions (PyPI `keylime`, in a "
          "venv) and Assay's core on the same evidence; see tests/keylime/README.md.")
        p()
        p(kl)
    else:
        p("Not run (ASSAY_BENCH_SKIP_KEYLIME=1).")
    p()


if __name__ == "__main__":
    main()

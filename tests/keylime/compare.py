#!/usr/bin/env python3
"""Keylime's side of the side-by-side benchmark (driven by tests/keylime/run.sh).

Subcommands:

  Evidence preparation (no Keylime code; hashlib, struct and tpm2_eventlog only):
    uefi-extends LOG               print "PCR:sha256=HEX" for every event tpm2_eventlog
                                   says the log extends (what run.sh replays into swtpm)
    tamper-uefi IN OUT             copy a UEFI log, flipping one byte of the sha256 digest
                                   of its first PCR 4 event
    make-ima DIR PCR0_9 COUNT      an ima-ng ascii log of COUNT entries (boot_aggregate over
                                   the 10 PCR values in file PCR0_9, then real files under
                                   /usr with their real sha256), its allowlist, the sha256
                                   template digests to extend PCR 10 with, and bad variants
    tamper-pcrs IN BAD RELABELED   bad copies of a tpm2_quote PCR file (-F serialized): one
                                   with the 8th value flipped, one with PCR 14 relabeled 15

  Measurement:
    run DIR                        time Keylime's verifier functions on the evidence in DIR
                                   (made by run.sh), print JSON
    table ASSAY.json KEYLIME.json [OUT.md]
                                   merge both sides, print the table, cross-check verdicts
                                   and replayed PCRs; exit 1 if a good case failed or a bad
                                   case passed in either tool
"""

import base64
import hashlib
import json
import os
import re
import statistics
import struct
import subprocess
import sys
import time

# Timing loops: at most MAX_N runs, stopping after BUDGET_S once MIN_N are done.
MAX_N = int(os.environ.get("ASSAY_KEYLIME_MAX_N", "200"))
MIN_N = 5
BUDGET_S = float(os.environ.get("ASSAY_KEYLIME_BUDGET_S", "2.0"))

MB_PCRS = list(range(10)) + [14]
ALL_PCRS = list(range(11)) + [14]


# ---------------------------------------------------------------------------
# Evidence preparation
# ---------------------------------------------------------------------------


def uefi_extends(path):
    """The (pcr, sha256 digest) of every event tpm2_eventlog replays, in log order."""
    import yaml  # pylint: disable=import-outside-toplevel

    out = subprocess.run(["tpm2_eventlog", path], check=True, capture_output=True).stdout
    log = yaml.load(out, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    for ev in log["events"]:
        if ev["EventType"] == "EV_NO_ACTION":
            continue
        for d in ev.get("Digests", []):
            if d["AlgorithmId"] == "sha256":
                print(f"{ev['PCRIndex']}:sha256={d['Digest']}")


def walk_uefi(data):
    """Yields (pcr, event_type, {alg_id: (offset, size)}) for each crypto-agile event."""
    # The first record is in the SHA-1 format and carries the Spec ID event.
    _pcr, _etype = struct.unpack_from("<II", data, 0)
    (esize,) = struct.unpack_from("<I", data, 8 + 20)
    spec = data[32 : 32 + esize]
    if not spec.startswith(b"Spec ID Event03"):
        raise ValueError("not a crypto-agile log")
    (nalg,) = struct.unpack_from("<I", spec, 24)
    sizes = {}
    for i in range(nalg):
        alg, size = struct.unpack_from("<HH", spec, 28 + 4 * i)
        sizes[alg] = size
    o = 32 + esize
    while o + 12 <= len(data):
        pcr, etype, count = struct.unpack_from("<III", data, o)
        if pcr == 0 and etype == 0 and count == 0:
            break  # zero padding after the last event
        o += 12
        digests = {}
        for _ in range(count):
            (alg,) = struct.unpack_from("<H", data, o)
            digests[alg] = (o + 2, sizes[alg])
            o += 2 + sizes[alg]
        (esize,) = struct.unpack_from("<I", data, o)
        o += 4 + esize
        yield pcr, etype, digests


def tamper_uefi(src, dst):
    data = bytearray(open(src, "rb").read())
    for pcr, etype, digests in walk_uefi(bytes(data)):
        if pcr == 4 and etype != 3 and 0x000B in digests:
            off, _ = digests[0x000B]
            data[off] ^= 0x01
            break
    else:
        raise SystemExit(f"{src}: no PCR 4 event with a sha256 digest")
    open(dst, "wb").write(bytes(data))


def ima_ng_template(alg, digest, name):
    """ima-ng template data: d-ng = "alg:" NUL digest, n-ng = name NUL, each u32-LE length prefixed."""
    d = alg.encode() + b":\0" + digest
    n = name.encode() + b"\0"
    return struct.pack("<I", len(d)) + d + struct.pack("<I", len(n)) + n


def ima_line(alg, digest, name):
    data = ima_ng_template(alg, digest, name)
    tline = f"10 {hashlib.sha1(data).hexdigest()} ima-ng {alg}:{digest.hex()} {name}\n"
    return tline, hashlib.sha256(data).hexdigest()


def real_files(count):
    """`count` regular files under /usr, sorted, with plain names, and their sha256."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._+-@,=~")
    out = []
    for root in ("/usr/bin", "/usr/sbin", "/usr/lib", "/usr/libexec", "/usr/share"):
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for f in sorted(filenames):
                p = os.path.join(dirpath, f)
                if not set(p) <= allowed or os.path.islink(p) or not os.path.isfile(p):
                    continue
                try:
                    if os.path.getsize(p) > 8 << 20:
                        continue
                    with open(p, "rb") as fh:
                        out.append((p, hashlib.sha256(fh.read()).digest()))
                except OSError:
                    continue
                if len(out) == count:
                    return out
    raise SystemExit(f"only {len(out)} files found under /usr")


def make_ima(outdir, pcr_file, count):
    pcrs = open(pcr_file, "rb").read()
    if len(pcrs) != 32 * 10:
        raise SystemExit(f"{pcr_file}: expected the 10 sha256 values of PCR 0-9")
    # The kernel's boot_aggregate for a non-SHA-1 bank: the bank's hash over PCR 0-9.
    aggregate = hashlib.sha256(pcrs).digest()
    entries = [("boot_aggregate", aggregate)] + real_files(count - 1)
    lines, extends = [], []
    for name, digest in entries:
        line, ext = ima_line("sha256", digest, name)
        lines.append(line)
        extends.append(ext)
    open(os.path.join(outdir, "ima.ascii"), "w").writelines(lines)
    with open(os.path.join(outdir, "ima-extends.txt"), "w") as f:
        f.writelines(f"10:sha256={e}\n" for e in extends)
    with open(os.path.join(outdir, "allowlist.tsv"), "w") as f:
        f.writelines(f"{name}\t{digest.hex()}\n" for name, digest in entries)
    mid = count // 2
    # Bad log: one file measured with another digest, its line made consistent
    # (template hash recomputed) -- replay no longer reaches the quoted PCR 10.
    bad = list(lines)
    name, digest = entries[mid]
    bad[mid] = ima_line("sha256", hashlib.sha256(digest).digest(), name)[0]
    open(os.path.join(outdir, "ima.bad.ascii"), "w").writelines(bad)
    # Bad allowlist: the same file is allowed only with another digest.
    with open(os.path.join(outdir, "allowlist.bad.tsv"), "w") as f:
        for i, (name, digest) in enumerate(entries):
            d = hashlib.sha256(digest).digest() if i == mid else digest
            f.write(f"{name}\t{d.hex()}\n")
    open(os.path.join(outdir, "ima-bad-path.txt"), "w").write(entries[mid][0] + "\n")


def tamper_pcrs(src, bad, relabeled):
    data = bytearray(open(src, "rb").read())
    # TPML_PCR_SELECTION: u32 count, 16 x (u16 hash, u8 sizeofSelect, u8 pcrSelect[4], pad)
    # then u32 count of TPML_DIGEST, each u32 count + 8 x (u16 size, u8 buffer[64]).
    first_value = 4 + 16 * 8 + 4 + 4 + 2
    b = bytearray(data)
    b[first_value + 7 * 66] ^= 0x01  # the 8th value (PCR 7)
    open(bad, "wb").write(bytes(b))
    r = bytearray(data)
    sel = 4 + 3  # pcrSelect of the first selection
    if r[sel + 1] & 0x40 == 0 or r[sel + 1] & 0x80:
        raise SystemExit(f"{src}: expected PCR 14 selected and 15 not")
    r[sel + 1] = (r[sel + 1] & ~0x40) | 0x80
    open(relabeled, "wb").write(bytes(r))


# ---------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------


def timed(fn):
    """Median wall time of fn() in µs, and the run count."""
    times = []
    start = time.perf_counter()
    while len(times) < MAX_N:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= MIN_N and time.perf_counter() - start > BUDGET_S:
            break
    return statistics.median(times) * 1e6, len(times)


def run(ev):
    # pylint: disable=import-outside-toplevel,too-many-locals,too-many-statements
    import argparse
    import copy
    import logging

    from keylime.common.algorithms import Hash
    from keylime.ima import ima
    from keylime.mba import mba
    from keylime.policy import create_mb_policy
    from keylime.tpm import tpm_main

    logging.getLogger("keylime").setLevel(logging.WARNING)
    mba.load_imports()

    def rd(name):
        with open(os.path.join(ev, name), "rb") as f:
            return f.read()

    nonce = bytes.fromhex(rd("nonce.hex").decode().strip())
    ak_rsa = base64.b64encode(rd("ak_rsa.pub")).decode()
    ak_ecc = base64.b64encode(rd("ak_ecc.pub")).decode()
    pcrread = rd("pcrread_all.bin")
    tpm_pcrs = {i: pcrread[32 * k : 32 * k + 32].hex() for k, i in enumerate(ALL_PCRS)}

    def quote(prefix, pcrs_file=None):
        """Keylime's wire form of a quote: r<b64 TPMS_ATTEST>:<b64 TPMT_SIGNATURE>:<b64 PCR file>."""
        parts = [rd(prefix + ".msg"), rd(prefix + ".sig"), rd(pcrs_file or prefix + ".pcrs")]
        return "r" + ":".join(base64.b64encode(p).decode() for p in parts)

    tpm = tpm_main.Tpm()
    results = {}

    def fail_ids(failure):
        return sorted(set(failure.get_event_ids())) if failure else []

    # 1. Quote check: Tpm._tpm2_checkquote is what check_quote runs first: AK
    # (TPM2B_PUBLIC) to key, base64 decode, signature, nonce, PCR file parse and digest.
    checkquote = getattr(tpm_main.Tpm, "_tpm2_checkquote")

    def quote_step(ak, prefix):
        good_q, bad_q = quote(prefix), quote(prefix, prefix + ".pcrs.bad")
        pcrs, err = checkquote(ak, good_q, nonce, "sha256", False)
        good = not err and pcrs == tpm_pcrs
        _, bad_err = checkquote(ak, bad_q, nonce, "sha256", False)
        us, n = timed(lambda: checkquote(ak, good_q, nonce, "sha256", False))
        return {
            "median_us": us,
            "n": n,
            "good_pass": good,
            "good_detail": err or f"{len(pcrs)} PCRs, values equal tpm2_pcrread's",
            "bad_pass": not bad_err,
            "bad_detail": bad_err or "accepted",
        }

    results["quote_rsa"] = quote_step(ak_rsa, "q_all_rsa")
    results["quote_ecdsa"] = quote_step(ak_ecc, "q_all_ecc")

    # 1c. Probe: the PCR file's selection relabeled (PCR 14's value presented as PCR 15).
    relabeled = quote("q_all_rsa", "q_all_rsa.pcrs.relabel")
    pcrs, err = checkquote(ak_rsa, relabeled, nonce, "sha256", False)
    probe = {
        "bad_pass": not err,
        "bad_detail": err or f"accepted; PCRs reported: {sorted(pcrs)}",
    }

    # 2. UEFI event logs: mba.bootlog_parse (tpm2_eventlog + enrichment + replay of
    # every bank + boot aggregates), as check_pcrs calls it.
    def bootlog(name):
        return base64.b64encode(rd(name)).decode()

    def replay_of(b64):
        pcrs_hashes, _aggs, data, failure = mba.bootlog_parse(b64, "sha256")
        values = {str(i): f"{int(pcrs_hashes.get(str(i), 0)):064x}" for i in MB_PCRS}
        return values, data, failure

    def eventlog_subprocess_us(name):
        """The part of bootlog_parse spent running tpm2_eventlog (spawn + its YAML output)."""
        cmd = ["tpm2_eventlog", "--eventlog-version=2", os.path.join(ev, name)]
        return timed(lambda: subprocess.run(cmd, check=True, capture_output=True))[0]

    gce_b64, gce_bad_b64 = bootlog("uefi_gce.bin"), bootlog("uefi_gce.bad.bin")
    gce_vals, gce_data, gce_fail = replay_of(gce_b64)
    gce_bad_vals, _, _ = replay_of(gce_bad_b64)
    us, n = timed(lambda: mba.bootlog_parse(gce_b64, "sha256"))
    diff = [i for i in MB_PCRS if gce_bad_vals[str(i)] != gce_vals[str(i)]]
    results["uefi_gce_replay"] = {
        "median_us": us,
        "n": n,
        "good_pass": not gce_fail,
        "good_detail": "parsed and replayed" if not gce_fail else str(fail_ids(gce_fail)),
        "bad_pass": not diff,
        "bad_detail": f"replay differs from the good log's in PCR {diff}" if diff else "same replay",
        "replay": gce_vals,
        "events": len(gce_data.get("events", [])) if gce_data else 0,
        "tpm2_eventlog_us": eventlog_subprocess_us("uefi_gce.bin"),
    }

    def refstate_for(name):
        args = argparse.Namespace(
            eventlog_file=os.path.join(ev, name), without_secureboot=True, output=os.devnull
        )
        return create_mb_policy.create_mb_refstate(args)

    # 2b. Keylime's stock measured-boot policy ("example") on the GCE log, with the
    # reference state Keylime's own create_mb_policy writes from that log.
    gce_ref = refstate_for("uefi_gce.bin")
    reason = "create_mb_policy wrote no reference state for this log"
    if gce_ref is not None:
        f = mba.bootlog_evaluate(json.dumps(gce_ref), gce_data, set(MB_PCRS), "bench")
        if not f:
            reason = None
        else:
            reason = "; ".join(json.loads(e.context).get("reason", e.event_id) for e in f.events)
    if reason is None:
        results["uefi_gce_policy"] = {"na": "unexpected: Keylime's stock policy accepts this log"}
    else:
        # The reason ends with what Keylime's test found ("... lacks fields {...}").
        m = re.search(r"(lacks fields \{[^}]*\}|has unexpected .*|is None instead of .*)$", reason)
        short = m.group(1) if m else reason[-160:]
        results["uefi_gce_policy"] = {
            "na": "stock 'example' policy rejects this good log with the reference state "
            f"Keylime's own create_mb_policy wrote from it: {short}",
            "na_detail": reason,
        }

    # 2c. The Keylime secure-boot log (the one the TPM replayed): parse + replay,
    # compared with the TPM's PCRs.
    sb_b64, sb_bad_b64 = bootlog("uefi_sb.bin"), bootlog("uefi_sb.bad.bin")
    sb_vals, sb_data, sb_fail = replay_of(sb_b64)
    sb_bad_vals, _, _ = replay_of(sb_bad_b64)
    us, n = timed(lambda: mba.bootlog_parse(sb_b64, "sha256"))
    off = [i for i in MB_PCRS if sb_vals[str(i)] != tpm_pcrs[i]]
    bad_off = [i for i in MB_PCRS if sb_bad_vals[str(i)] != tpm_pcrs[i]]
    results["uefi_sb_replay"] = {
        "median_us": us,
        "n": n,
        "good_pass": not sb_fail and not off,
        "good_detail": f"replay differs from the TPM in PCR {off}" if off else "replay equals the TPM's PCRs",
        "bad_pass": not bad_off,
        "bad_detail": f"replay differs from the TPM in PCR {bad_off}" if bad_off else "replay equals the TPM",
        "replay": sb_vals,
        "events": len(sb_data.get("events", [])) if sb_data else 0,
        "tpm2_eventlog_us": eventlog_subprocess_us("uefi_sb.bin"),
    }

    # 2d. Quote + log + Keylime's measured-boot policy: Tpm.check_quote as the
    # verifier calls it (measured_boot_evaluate = always), quote over PCRs 0-9, 14.
    sb_ref = refstate_for("uefi_sb.bin")
    if sb_ref is None:
        raise SystemExit("create_mb_policy wrote no reference state for the secure-boot log")
    sb_ref_json = json.dumps(sb_ref)
    bad_ref = copy.deepcopy(sb_ref)
    for k in bad_ref["kernels"]:
        k["kernel_cmdline"] = "console=ttyS0"  # a command line this boot did not have
    bad_ref_json = json.dumps(bad_ref)
    q_mb = quote("q_mb_rsa")

    def check_mb(ref):
        return tpm.check_quote(
            None, nonce, None, q_mb, ak_rsa, tpm_policy={}, hash_alg=Hash.SHA256,
            mb_measurement_list=sb_b64, mb_policy=ref, mb_policy_name="example", count=0,
        )

    good_f, bad_f = check_mb(sb_ref_json), check_mb(bad_ref_json)
    us, n = timed(lambda: check_mb(sb_ref_json))
    results["uefi_sb_policy"] = {
        "median_us": us,
        "n": n,
        "good_pass": not good_f,
        "good_detail": str(fail_ids(good_f)) if good_f else "accepted",
        "bad_pass": not bad_f,
        "bad_detail": str(fail_ids(bad_f)) if bad_f else "accepted",
    }

    # 3. IMA.
    ima_text, ima_bad_text = rd("ima.ascii").decode(), rd("ima.bad.ascii").decode()

    def runtime_policy(tsv):
        rp = ima.empty_policy()
        for line in rd(tsv).decode().splitlines():
            path, digest = line.split("\t")
            rp["digests"].setdefault(path, []).append(digest)
        rp["ima"]["log_hash_alg"] = "sha1"
        ima.validate_runtime_policy(rp)
        return rp

    rp, rp_bad = runtime_policy("allowlist.tsv"), runtime_policy("allowlist.bad.tsv")

    # 3a. Parse + replay only (no runtime policy): ima.process_measurement_list.
    def ima_replay(text):
        return ima.process_measurement_list(
            None, text.split("\n"), None, pcrval=tpm_pcrs[10], hash_alg=Hash.SHA256
        )

    running, f = ima_replay(ima_text)
    running_bad, f_bad = ima_replay(ima_bad_text)
    us, n = timed(lambda: ima_replay(ima_text))
    results["ima_replay"] = {
        "median_us": us,
        "n": n,
        "good_pass": not f and running == tpm_pcrs[10],
        "good_detail": str(fail_ids(f)) if f else "replay equals the TPM's PCR 10",
        "bad_pass": not f_bad,
        "bad_detail": str(fail_ids(f_bad)) if f_bad else "accepted",
        "replay": {"10": running},
        "bad_replay": {"10": running_bad},
    }

    # 3b. Quote over PCR 10 + IMA log + runtime policy (allowlist): Tpm.check_quote.
    q_ima = quote("q_ima_rsa")

    def check_ima(policy):
        return tpm.check_quote(
            None, nonce, None, q_ima, ak_rsa, tpm_policy={}, ima_measurement_list=ima_text,
            runtime_policy=policy, hash_alg=Hash.SHA256, count=0,
        )

    good_f, bad_f = check_ima(rp), check_ima(rp_bad)
    us, n = timed(lambda: check_ima(rp))
    results["ima_policy"] = {
        "median_us": us,
        "n": n,
        "good_pass": not good_f,
        "good_detail": str(fail_ids(good_f)) if good_f else "accepted",
        "bad_pass": not bad_f,
        "bad_detail": str(fail_ids(bad_f)) if bad_f else "accepted",
    }

    # 4. Everything at once: quote over PCRs 0-10, 14 + UEFI log + measured-boot
    # policy + IMA log + runtime policy. Bad: an old nonce (a replayed quote).
    q_all = quote("q_all_rsa")

    def check_all(n_expected, quote_str=q_all):
        return tpm.check_quote(
            None, n_expected, None, quote_str, ak_rsa, tpm_policy={}, ima_measurement_list=ima_text,
            runtime_policy=rp, hash_alg=Hash.SHA256, mb_measurement_list=sb_b64,
            mb_policy=sb_ref_json, mb_policy_name="example", count=0,
        )

    other_nonce = hashlib.sha256(nonce).digest()
    good_f, bad_f = check_all(nonce), check_all(other_nonce)
    relabel_f = check_all(nonce, relabeled)
    us, n = timed(lambda: check_all(nonce))
    results["whole"] = {
        "median_us": us,
        "n": n,
        "good_pass": not good_f,
        "good_detail": str(fail_ids(good_f)) if good_f else "accepted",
        "bad_pass": not bad_f,
        "bad_detail": str(fail_ids(bad_f)) if bad_f else "accepted",
    }
    probe["whole_pass"] = not relabel_f
    probe["whole_detail"] = str(fail_ids(relabel_f)) if relabel_f else "accepted"
    results["quote_relabel"] = probe
    json.dump(results, sys.stdout, indent=1)
    print()


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------

STEPS = [
    ("quote_rsa", "1a quote check: parse + signature + nonce + PCR digest, RSA-2048 RSASSA (12 PCRs)"),
    ("quote_ecdsa", "1b quote check, ECDSA P-256 (12 PCRs)"),
    ("quote_relabel", "1c probe: PCR file relabeled (PCR 14's value reported as PCR 15), verdicts only"),
    ("uefi_gce_replay", "2a UEFI log parse + replay: GCE Ubuntu 21.04 log (112 events)"),
    ("uefi_gce_policy", "2b quote + GCE log replay + measured-boot policy (Assay: software-AK quote, no TPM booted this log)"),
    ("uefi_sb_replay", "2c UEFI log parse + replay: Keylime's secure-boot test log (99 events, the TPM's boot)"),
    ("uefi_sb_policy", "2d quote (PCR 0-9, 14) + secure-boot log replay + measured-boot policy"),
    ("ima_replay", "3a IMA ascii log, 10,000 ima-ng entries: parse + replay into sha256 PCR 10"),
    ("ima_policy", "3b quote (PCR 10) + IMA replay + allowlist of 10,000 files"),
    ("whole", "4 whole verification: quote (PCR 0-10, 14) + UEFI log + measured-boot policy + IMA + allowlist"),
]


def fmt_us(v):
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def table(assay_path, keylime_path, out_md=None, header=""):
    # pylint: disable=too-many-branches,too-many-locals
    assay = json.load(open(assay_path))
    keylime = json.load(open(keylime_path))
    rows, problems, notes = [], [], []
    for sid, label in STEPS:
        a, k = assay.get(sid, {}), keylime.get(sid, {})
        if sid == "quote_relabel":
            av = "rejects" if not a.get("bad_pass") else "ACCEPTS"
            kv = "rejects" if not k.get("bad_pass") else "accepts"
            rows.append((label, f"quote check {av}", f"quote check {kv}", "—"))
            notes.append(
                f"1c probe: Assay quote check: {a.get('bad_detail')}; Keylime quote check "
                f"(_tpm2_checkquote): {k.get('bad_detail')}; whole verification with it: "
                f"Assay {'accepts' if a.get('whole_pass') else 'rejects'} ({a.get('whole_detail')}), "
                f"Keylime {'accepts' if k.get('whole_pass') else 'rejects'} ({k.get('whole_detail')})"
            )
            if a.get("bad_pass"):
                problems.append("1c: Assay accepted a relabeled PCR file")
            continue
        acell = fmt_us(a["median_us"]) if "median_us" in a else "n/a: " + a.get("na", "missing")
        kcell = fmt_us(k["median_us"]) if "median_us" in k else "n/a: " + k.get("na", "missing")
        ratio = f"{k['median_us'] / a['median_us']:,.1f}×" if "median_us" in a and "median_us" in k else "—"
        rows.append((label, acell, kcell, ratio))
        for tool, r in (("Assay", a), ("Keylime", k)):
            if "median_us" not in r:
                continue
            if not r.get("good_pass"):
                problems.append(f"{sid}: {tool} failed the good evidence: {r.get('good_detail')}")
            if r.get("bad_pass"):
                problems.append(f"{sid}: {tool} passed the bad evidence: {r.get('bad_detail')}")
            notes.append(
                f"{sid}: {tool}: good {'PASS' if r.get('good_pass') else 'FAIL'} ({r.get('good_detail')}); "
                f"bad {'PASS' if r.get('bad_pass') else 'FAIL'} ({r.get('bad_detail')}); n = {r.get('n')}"
            )
        if "events" in a and "events" in k:
            notes.append(f"{sid}: events parsed: Assay {a['events']}, Keylime (tpm2_eventlog) {k['events']}")
        if "tpm2_eventlog_us" in k:
            notes.append(
                f"{sid}: Keylime: of its {fmt_us(k['median_us'])} µs, running tpm2_eventlog alone "
                f"(process + its YAML on a pipe) takes {fmt_us(k['tpm2_eventlog_us'])} µs"
            )
        if "na_detail" in k:
            notes.append(f"{sid}: Keylime: {k['na_detail']}")
        # Replayed PCR values must agree between the tools.
        if "replay" in a and "replay" in k:
            for pcr, v in a["replay"].items():
                if k["replay"].get(pcr) != v:
                    problems.append(
                        f"{sid}: replayed PCR {pcr} differs: Assay {v}, Keylime {k['replay'].get(pcr)}"
                    )
            notes.append(f"{sid}: replayed PCRs {sorted(a['replay'], key=int)} agree between Assay and Keylime")
        if "bad_replay" in a and "bad_replay" in k and a["bad_replay"] != k["bad_replay"]:
            problems.append(f"{sid}: replay of the bad log differs: Assay {a['bad_replay']}, Keylime {k['bad_replay']}")
    head = ("step", "Assay µs (median)", "Keylime µs (median)", "ratio Keylime/Assay")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    widths[2] = min(widths[2], 60)
    print(" | ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths)))
    print()
    for n in notes:
        print("  " + n)
    if problems:
        print("\nPROBLEMS:")
        for p in problems:
            print("  " + p)
    if out_md:
        with open(out_md, "w") as f:
            if header:
                f.write(header + "\n\n")
            f.write("| " + " | ".join(head) + " |\n|" + "---|" * 4 + "\n")
            for r in rows:
                f.write("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |\n")
            f.write("\n" + "\n".join("- " + n.replace("|", "\\|") for n in notes) + "\n")
            if problems:
                f.write("\n**Problems:**\n\n" + "\n".join("- " + p for p in problems) + "\n")
    return 1 if problems else 0


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "uefi-extends":
        uefi_extends(*args)
    elif cmd == "tamper-uefi":
        tamper_uefi(*args)
    elif cmd == "make-ima":
        make_ima(args[0], args[1], int(args[2]))
    elif cmd == "tamper-pcrs":
        tamper_pcrs(*args)
    elif cmd == "run":
        run(*args)
    elif cmd == "table":
        sys.exit(table(args[0], args[1], args[2] if len(args) > 2 and args[2] else None, os.environ.get("TABLE_HEADER", "")))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()

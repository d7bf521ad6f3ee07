//! A large IMA allowlist: a policy naming 200,000 files (paths as a distro
//! and its containers lay them out, one sha256 digest each: ~27 MiB of TOML,
//! under today's 32 MiB policy limit) is loaded, its load time and memory
//! reported, and 10,000 measured files looked up.
//!
//! `cargo bench -p assay-core --bench ima_allowlist` (prints figures; no criterion).

use std::time::Instant;

use assay_core::policy::Policy;

/// As in the `assay-verifier` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DIRS: &[&str] = &[
    "/usr/bin",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/python3/dist-packages/numpy/core",
    "/usr/lib/modules/6.8.0-51-generic/kernel/drivers/net/ethernet/intel/e1000e",
    "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/1234/fs/usr/lib",
    "/opt/app/node_modules/.pnpm/lodash@4.17.21/node_modules/lodash",
];

fn path(i: usize) -> String {
    format!("{}/file-{i}.so", DIRS[i % DIRS.len()])
}

fn digest(i: usize) -> String {
    let mut d = [0u8; 32];
    d[..8].copy_from_slice(&(i as u64).to_le_bytes());
    hex::encode(d)
}

/// VmRSS and VmHWM of this process, in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn main() {
    const N: usize = 200_000;
    let mut text = String::with_capacity(N * 130);
    text.push_str("schema = 1\nname = \"large\"\n[ima]\nboot_aggregate = false\nexcludes = ['/tmp/.*']\n[ima.allowlist]\n");
    for i in 0..N {
        text.push_str(&format!("{:?} = [\"sha256:{}\"]\n", path(i), digest(i)));
    }
    let (rss_before, _) = rss_kib();
    let t = Instant::now();
    let policy = Policy::parse("large.toml", &text).expect("the policy parses");
    let load = t.elapsed();
    let (rss_after, hwm) = rss_kib();
    let rules = policy.ima().expect("[ima]");
    assert_eq!(rules.allowlist.len(), N);
    println!(
        "ima allowlist: {N} paths, policy text {:.1} MiB: loaded in {:.2} s; allowlist holds {:.1} MiB ({:.0} bytes per path); RSS +{:.1} MiB after loading (peak {:.1} MiB, text included)",
        text.len() as f64 / (1 << 20) as f64,
        load.as_secs_f64(),
        rules.allowlist.heap_bytes() as f64 / (1 << 20) as f64,
        rules.allowlist.heap_bytes() as f64 / N as f64,
        rss_after.saturating_sub(rss_before) as f64 / 1024.0,
        hwm as f64 / 1024.0,
    );
    // Judging 10,000 measured files: each looked up and its digest compared
    // (what `ima.file` does per entry), as a median of 50 rounds.
    let probes: Vec<(String, Vec<u8>)> = (0..10_000)
        .map(|k| {
            let i = (k * 7919) % N;
            (path(i), hex::decode(digest(i)).unwrap())
        })
        .collect();
    let mut rounds = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let mut ok = 0usize;
        for (p, d) in &probes {
            if !rules.excluded(p)
                && rules
                    .allowlist
                    .get(std::hint::black_box(p))
                    .is_some_and(|s| s.allows("sha256", d))
            {
                ok += 1;
            }
        }
        assert_eq!(ok, probes.len());
        rounds.push(t.elapsed());
    }
    rounds.sort();
    println!(
        "ima allowlist: 10,000 measured files judged against it (lookup, digest, one exclude pattern): {:.3} ms (median of 50)",
        rounds[rounds.len() / 2].as_secs_f64() * 1e3
    );
}

//! Embeds the curated TPM vendor EK CA bundle (`ek-ca/`, listed in
//! `ek-ca/MANIFEST`) so that `trust.ek_roots = ["builtin"]` works from an
//! installed binary: `OUT_DIR/ek_ca.rs` holds one entry per MANIFEST line.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ek-ca");
    println!("cargo:rerun-if-changed={}", dir.display());
    let manifest = std::fs::read_to_string(dir.join("MANIFEST")).expect("ek-ca/MANIFEST");
    let mut out = String::from(
        "/// The bundle: (file, role as the MANIFEST says, PEM, SHA-256 of the DER, not-after).\n\
         pub static BUILTIN_EK_CA: &[(&str, &str, &[u8], &str, &str)] = &[\n",
    );
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split('\t').collect();
        assert!(f.len() >= 7, "ek-ca/MANIFEST: short line: {line}");
        let path = dir.join(f[0]);
        println!("cargo:rerun-if-changed={}", path.display());
        assert!(
            path.is_file(),
            "ek-ca/MANIFEST names a missing file: {}",
            f[0]
        );
        writeln!(
            out,
            "    ({:?}, {:?}, include_bytes!({:?}), {:?}, {:?}),",
            f[0],
            f[2],
            path.display().to_string(),
            f[5],
            f[6]
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("ek_ca.rs");
    std::fs::write(dest, out).unwrap();
}

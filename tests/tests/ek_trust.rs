//! EK trust settings with real swtpm TPMs and the real binaries: the
//! built-in vendor bundle loads beside the operator's own CA files, and
//! alone it does not trust a CA it does not hold.

use std::path::PathBuf;
use std::process::Output;

use assay_tests::{attestor, Swtpm, VerifierOpts, VerifierProc};

fn policy() -> String {
    let zero = "0".repeat(64);
    format!("schema = 0\nname = \"ek-trust\"\n[pcrs.sha256]\n0 = \"{zero}\"\n16 = \"{zero}\"\n")
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_builtin_vendor_bundle_loads_beside_the_operators_ca_and_trusts_only_what_it_holds() {
    let tpm = Swtpm::start().unwrap();
    // Beside the test CA: the swtpm enrolls.
    let mut opts = VerifierOpts::new(policy());
    opts.ek_roots.insert(0, PathBuf::from("builtin"));
    let v = VerifierProc::start(&opts).unwrap();
    let state = tempfile::tempdir().unwrap();
    let ok = attestor(&tpm, &v, state.path(), "n1", "join", &[]).unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}\n{}", text(&ok), v.log());
    assert!(
        v.log().contains("built-in EK CA has expired"),
        "{}",
        v.log()
    );
    drop(v);
    // The bundle alone: swtpm's CA is no vendor's, so it is refused.
    let mut opts = VerifierOpts::new(policy());
    opts.ek_roots = vec![PathBuf::from("builtin")];
    opts.ek_intermediates.clear();
    let v = VerifierProc::start(&opts).unwrap();
    let state = tempfile::tempdir().unwrap();
    let refused = attestor(&tpm, &v, state.path(), "n1", "join", &[]).unwrap();
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    assert!(
        text(&refused).contains("EK certificate refused"),
        "{}",
        text(&refused)
    );
}

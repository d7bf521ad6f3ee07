//! The harness itself: two swtpm instances run side by side, each answers, each has an EK certificate.

use assay_tests::Swtpm;

#[test]
fn two_swtpms_run_in_parallel_with_ek_certificates() {
    let a = Swtpm::start().unwrap();
    let b = Swtpm::start().unwrap();
    assert_ne!(a.port(), b.port());
    for t in [&a, &b] {
        let out = t.tpm2("tpm2_getcap", &["properties-fixed"]).unwrap();
        assert!(String::from_utf8_lossy(&out).contains("TPM2_PT_FAMILY_INDICATOR"));
        let out = t.tpm2("tpm2_nvreadpublic", &[]).unwrap();
        assert!(
            String::from_utf8_lossy(&out).contains("0x1c00002"),
            "RSA EK certificate index present"
        );
    }
}

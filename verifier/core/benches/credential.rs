//! TPM2_MakeCredential in software per EK shape of the TCG EK Credential
//! Profile: what one enrollment costs the verifier in crypto, side by side.
//! Run: cargo bench -p assay-core --bench credential

use assay_core::tpm::credential::{make_credential, CredentialKey, TPM_ECC_NIST_P384};
use assay_core::tpm::public::{parse_tpm2b_public, HashAlg, TPM_ECC_NIST_P256};
use assay_core::verify::testutil::{ecc_ek_public_bytes, rsa_ek_public_bytes_with, rsa_key};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rand::SeedableRng;

fn key_of(public: &[u8]) -> CredentialKey {
    CredentialKey::from_public(&parse_tpm2b_public(public).unwrap()).unwrap()
}

fn ecc(curve: u16, name_alg: HashAlg, sym: u16) -> CredentialKey {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let point = if curve == TPM_ECC_NIST_P256 {
        p256::EncodedPoint::from(p256::SecretKey::random(&mut rng).public_key())
            .as_bytes()
            .to_vec()
    } else {
        p384::EncodedPoint::from(p384::SecretKey::random(&mut rng).public_key())
            .as_bytes()
            .to_vec()
    };
    let n = (point.len() - 1) / 2;
    key_of(&ecc_ek_public_bytes(
        curve,
        &point[1..1 + n],
        &point[1 + n..],
        name_alg,
        sym,
    ))
}

fn make_credential_per_ek(c: &mut Criterion) {
    let mut name = vec![0x00, 0x0b];
    name.extend([7u8; 32]);
    let eks = [
        (
            "rsa2048 (L-1)",
            key_of(&rsa_ek_public_bytes_with(
                &rsa_key(2048, 1).to_public_key(),
                HashAlg::Sha256,
                128,
            )),
        ),
        (
            "rsa3072 (H-6)",
            key_of(&rsa_ek_public_bytes_with(
                &rsa_key(3072, 1).to_public_key(),
                HashAlg::Sha384,
                256,
            )),
        ),
        (
            "rsa4096 (H-7)",
            key_of(&rsa_ek_public_bytes_with(
                &rsa_key(4096, 1).to_public_key(),
                HashAlg::Sha384,
                256,
            )),
        ),
        (
            "ecc-p256 (L-2)",
            ecc(TPM_ECC_NIST_P256, HashAlg::Sha256, 128),
        ),
        (
            "ecc-p384 (H-3)",
            ecc(TPM_ECC_NIST_P384, HashAlg::Sha384, 256),
        ),
    ];
    let mut g = c.benchmark_group("make_credential");
    for (what, ek) in &eks {
        g.bench_function(*what, |b| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(2);
            b.iter(|| make_credential(black_box(ek), &name, &[9u8; 32], &mut rng).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, make_credential_per_ek);
criterion_main!(benches);

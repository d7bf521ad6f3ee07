#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::OnceLock;

use p256::ecdsa::signature::hazmat::PrehashSigner;
use proptest::prelude::*;
use rand::SeedableRng;
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
use sha2::Digest;

use super::*;
use crate::reader::WireError;
use crate::verify::testutil;

const ALGS: [HashAlgo; 5] = [
    HashAlgo::Sha1,
    HashAlgo::Sha224,
    HashAlgo::Sha256,
    HashAlgo::Sha384,
    HashAlgo::Sha512,
];

fn rsa_key() -> &'static rsa::RsaPrivateKey {
    static K: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    K.get_or_init(|| testutil::rsa_key(2048, 42))
}

fn p256_key(seed: u64) -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::random(&mut rand::rngs::StdRng::seed_from_u64(seed))
}

fn p384_key(seed: u64) -> p384::ecdsa::SigningKey {
    p384::ecdsa::SigningKey::random(&mut rand::rngs::StdRng::seed_from_u64(seed))
}

fn digest(alg: HashAlgo, data: &[u8]) -> Vec<u8> {
    match alg {
        HashAlgo::Sha1 => sha1::Sha1::digest(data).to_vec(),
        HashAlgo::Sha224 => sha2::Sha224::digest(data).to_vec(),
        HashAlgo::Sha256 => sha2::Sha256::digest(data).to_vec(),
        HashAlgo::Sha384 => sha2::Sha384::digest(data).to_vec(),
        HashAlgo::Sha512 => sha2::Sha512::digest(data).to_vec(),
    }
}

fn rsa_spki(k: &rsa::RsaPrivateKey) -> Vec<u8> {
    k.to_public_key().to_public_key_der().unwrap().into_vec()
}

fn p256_spki(k: &p256::ecdsa::SigningKey) -> Vec<u8> {
    p256::PublicKey::from(k.verifying_key())
        .to_public_key_der()
        .unwrap()
        .into_vec()
}

fn p384_spki(k: &p384::ecdsa::SigningKey) -> Vec<u8> {
    p384::PublicKey::from(k.verifying_key())
        .to_public_key_der()
        .unwrap()
        .into_vec()
}

/// A signer as evmctl is one: the raw signature over a prehashed digest.
enum TestKey {
    Rsa(rsa::RsaPrivateKey),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
}

impl TestKey {
    fn spki(&self) -> Vec<u8> {
        match self {
            TestKey::Rsa(k) => rsa_spki(k),
            TestKey::P256(k) => p256_spki(k),
            TestKey::P384(k) => p384_spki(k),
        }
    }

    fn raw_sign(&self, alg: HashAlgo, d: &[u8]) -> Vec<u8> {
        match self {
            TestKey::Rsa(k) => k.sign(keyring_pkcs1v15(alg), d).unwrap(),
            TestKey::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign_prehash(&pad(d, 32)).unwrap();
                s.to_der().as_bytes().to_vec()
            }
            TestKey::P384(k) => {
                let s: p384::ecdsa::Signature = k.sign_prehash(&pad(d, 48)).unwrap();
                s.to_der().as_bytes().to_vec()
            }
        }
    }

    /// The `security.ima` value evmctl would write, with `key_id`.
    fn sign(&self, alg: HashAlgo, d: &[u8], key_id: KeyId) -> Vec<u8> {
        ImaSignature {
            hash_algo: alg,
            key_id,
            signature: self.raw_sign(alg, d),
        }
        .to_bytes()
    }
}

fn pad(d: &[u8], n: usize) -> Vec<u8> {
    let mut out = vec![0; n.saturating_sub(d.len())];
    out.extend(d);
    out
}

fn keyring_pkcs1v15(alg: HashAlgo) -> rsa::Pkcs1v15Sign {
    match alg {
        HashAlgo::Sha1 => rsa::Pkcs1v15Sign::new::<sha1::Sha1>(),
        HashAlgo::Sha224 => rsa::Pkcs1v15Sign::new::<sha2::Sha224>(),
        HashAlgo::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
        HashAlgo::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
        HashAlgo::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
    }
}

fn keyring_of(keys: &[&TestKey]) -> (Keyring, Vec<KeyId>) {
    let mut k = Keyring::new();
    let ids = keys
        .iter()
        .map(|t| k.add_public_key_der(&t.spki()).unwrap())
        .collect();
    (k, ids)
}

/// A certificate (made by rcgen) for a P-256 key, with an explicit SKID or none.
fn p256_cert(key: &p256::ecdsa::SigningKey, cn: &str, skid: Option<&[u8]>) -> Vec<u8> {
    let der = key.to_pkcs8_der().unwrap();
    let pair = rcgen::KeyPair::try_from(der.as_bytes()).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    if let Some(skid) = skid {
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(skid.to_vec());
    }
    params.self_signed(&pair).unwrap().der().to_vec()
}

fn header(t: u8, version: u8, alg: u8, sig: &[u8]) -> Vec<u8> {
    let mut b = vec![t, version, alg, 0xde, 0xad, 0xbe, 0xef];
    b.extend((sig.len() as u16).to_be_bytes());
    b.extend(sig);
    b
}

// ---- the header ----------------------------------------------------------

#[test]
fn parses_a_v2_header_and_round_trips() {
    let bytes = header(0x03, 2, 4, &[1, 2, 3]);
    let sig = ImaSignature::parse(&bytes).unwrap();
    assert_eq!(sig.hash_algo, HashAlgo::Sha256);
    assert_eq!(sig.key_id, KeyId(0xdeadbeef));
    assert_eq!(sig.signature, [1, 2, 3]);
    assert_eq!(sig.to_bytes(), bytes);
    assert_eq!(sig.key_id.to_string(), "deadbeef");
    assert_eq!(KeyId(0x102).to_string(), "00000102");
}

#[test]
fn rejects_every_truncation() {
    let bytes = header(0x03, 2, 4, &[7; 40]);
    for n in 0..bytes.len() {
        assert!(
            matches!(
                ImaSignature::parse(&bytes[..n]),
                Err(SignatureFormatError::Wire(WireError::MissingData { .. }))
            ),
            "{n} bytes"
        );
    }
}

#[test]
fn rejects_trailing_bytes() {
    let mut bytes = header(0x03, 2, 4, &[7; 40]);
    bytes.push(0);
    assert_eq!(
        ImaSignature::parse(&bytes),
        Err(SignatureFormatError::Wire(WireError::TrailingData {
            what: "IMA signature (after sig_size bytes)",
            len: 1
        }))
    );
}

#[test]
fn rejects_oversized_and_empty_signatures() {
    // The maximum is checked before the bytes are looked for.
    let mut big = header(0x03, 2, 4, &[]);
    big[7..9].copy_from_slice(&2049u16.to_be_bytes());
    assert_eq!(
        ImaSignature::parse(&big),
        Err(SignatureFormatError::Wire(WireError::TooLarge {
            what: "signature_v2_hdr.sig_size",
            len: 2049,
            max: MAX_SIGNATURE_LEN
        }))
    );
    let mut bytes = header(0x03, 2, 4, &[0; MAX_SIGNATURE_LEN + 1]);
    assert!(ImaSignature::parse(&bytes).is_err());
    bytes = header(0x03, 2, 4, &[0; MAX_SIGNATURE_LEN]);
    assert_eq!(
        ImaSignature::parse(&bytes).unwrap().signature.len(),
        MAX_SIGNATURE_LEN
    );
    assert_eq!(
        ImaSignature::parse(&header(0x03, 2, 4, &[])),
        Err(SignatureFormatError::Empty)
    );
}

#[test]
fn rejects_other_xattr_types_and_fs_verity_signatures() {
    for t in [0x00, 0x01, 0x02, 0x04, 0x06, 0x07, 0xff] {
        assert!(
            matches!(
                ImaSignature::parse(&header(t, 2, 4, &[1])),
                Err(SignatureFormatError::NotASignature { value, .. }) if value == t
            ),
            "type {t:#x}"
        );
    }
    let e = ImaSignature::parse(&header(0x05, 3, 4, &[1])).unwrap_err();
    assert_eq!(e, SignatureFormatError::VerityUnsupported);
    assert!(e.to_string().contains("IMA_VERITY_DIGSIG"), "{e}");
    let e = ImaSignature::parse(&header(0x04, 2, 4, &[1])).unwrap_err();
    assert!(e.to_string().contains("no IMA signature"), "{e}");
}

#[test]
fn rejects_versions_other_than_2() {
    for v in [0, 1, 3, 4, 0xff] {
        assert_eq!(
            ImaSignature::parse(&header(0x03, v, 4, &[1])),
            Err(SignatureFormatError::UnsupportedVersion(v))
        );
    }
    let v3 = ImaSignature::parse(&header(0x03, 3, 4, &[1])).unwrap_err();
    assert!(v3.to_string().contains("ima_file_id"), "{v3}");
    let v1 = ImaSignature::parse(&header(0x03, 1, 4, &[1])).unwrap_err();
    assert!(v1.to_string().contains("--rsa"), "{v1}");
}

#[test]
fn rejects_unsupported_hash_algorithms_by_number_and_name() {
    for id in [0, 1, 3, 8, 11, 17, 18, 19, 20, 22, 23, 0xff] {
        assert_eq!(
            ImaSignature::parse(&header(0x03, 2, id, &[1])),
            Err(SignatureFormatError::UnsupportedHashAlgorithm { id })
        );
    }
    let e = ImaSignature::parse(&header(0x03, 2, 17, &[1])).unwrap_err();
    assert!(
        e.to_string()
            .contains("unsupported hash algorithm 17 (sm3)"),
        "{e}"
    );
    let e = ImaSignature::parse(&header(0x03, 2, 200, &[1])).unwrap_err();
    assert!(
        e.to_string()
            .contains("unsupported hash algorithm 200 (not in the kernel's enum hash_algo)"),
        "{e}"
    );
}

#[test]
fn hash_algorithm_numbers_are_the_kernels() {
    let mut supported = 0;
    for id in 0..=255u8 {
        if let Some(alg) = HashAlgo::from_kernel(id) {
            supported += 1;
            assert_eq!(alg.kernel_id(), id);
            assert_eq!(kernel_hash_algo_name(id), Some(alg.name()));
            assert_eq!(digest(alg, b"").len(), alg.digest_len());
        }
    }
    assert_eq!(supported, 5);
    assert_eq!(kernel_hash_algo_name(4), Some("sha256"));
    assert_eq!(kernel_hash_algo_name(7), Some("sha224"));
    assert_eq!(kernel_hash_algo_name(19), Some("streebog512"));
    assert_eq!(kernel_hash_algo_name(23), None);
}

// ---- verification --------------------------------------------------------

#[test]
fn rsa_and_ecdsa_signatures_verify_with_every_hash() {
    let keys = [
        TestKey::Rsa(rsa_key().clone()),
        TestKey::P256(p256_key(1)),
        TestKey::P384(p384_key(2)),
    ];
    let (ring, ids) = keyring_of(&keys.iter().collect::<Vec<_>>());
    for (key, id) in keys.iter().zip(&ids) {
        for alg in ALGS {
            let d = digest(alg, b"/usr/bin/true");
            let signer = verify(&ring, alg.name(), &d, &key.sign(alg, &d, *id))
                .unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(signer.key_id, *id);
            assert_eq!(signer.hash_algo, alg);
            assert_eq!(signer.description, format!("public key {id}"));
            assert_eq!(
                signer.spki_sha256,
                <[u8; 32]>::from(sha2::Sha256::digest(key.spki()))
            );
        }
    }
    let algorithms: Vec<_> = ring.keys().map(Key::algorithm).collect();
    assert_eq!(
        algorithms,
        [
            KeyAlgorithm::Rsa { bits: 2048 },
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384
        ]
    );
}

#[test]
fn rejects_signature_over_another_hash_algorithm_than_the_logs() {
    let key = TestKey::P256(p256_key(1));
    let (ring, ids) = keyring_of(&[&key]);
    let d = digest(HashAlgo::Sha256, b"x");
    let sig = key.sign(HashAlgo::Sha256, &d, ids[0]);
    for logged in ["sha1", "sha512", "SHA256", "sm3", ""] {
        assert_eq!(
            verify(&ring, logged, &d, &sig),
            Err(SignatureError::HashAlgorithmMismatch {
                signature: HashAlgo::Sha256,
                logged: logged.into()
            })
        );
    }
    let e = verify(&ring, "sha1", &d, &sig).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the signature is over a sha256 digest, but the log has a \"sha1\" digest of the file"
    );
    assert_eq!(
        verify(&ring, "sha256", &d[..20], &sig),
        Err(SignatureError::DigestLength {
            alg: HashAlgo::Sha256,
            len: 20,
            expected: 32
        })
    );
}

#[test]
fn rejects_signature_by_a_key_not_in_the_keyring() {
    let key = TestKey::Rsa(rsa_key().clone());
    let (_, ids) = keyring_of(&[&key]);
    let d = digest(HashAlgo::Sha256, b"x");
    let sig = key.sign(HashAlgo::Sha256, &d, ids[0]);
    let e = verify(&Keyring::new(), "sha256", &d, &sig).unwrap_err();
    assert_eq!(e, SignatureError::UnknownKey { key_id: ids[0] });
    assert!(
        e.to_string()
            .starts_with(&format!("no key with id {} in the IMA keyring", ids[0])),
        "{e}"
    );
    let other = TestKey::P256(p256_key(9));
    let (ring, _) = keyring_of(&[&other]);
    assert_eq!(
        verify(&ring, "sha256", &d, &sig),
        Err(SignatureError::UnknownKey { key_id: ids[0] })
    );
}

#[test]
fn rejects_bit_flipped_signature_digest_and_key_id() {
    for key in [TestKey::Rsa(rsa_key().clone()), TestKey::P256(p256_key(1))] {
        let (ring, ids) = keyring_of(&[&key]);
        let d = digest(HashAlgo::Sha256, b"x");
        let good = key.sign(HashAlgo::Sha256, &d, ids[0]);
        verify(&ring, "sha256", &d, &good).unwrap();
        for i in (HEADER_LEN..good.len()).step_by(5) {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            // A flip inside the DER of an ECDSA signature may make it not parse: still bad.
            assert_eq!(
                verify(&ring, "sha256", &d, &bad),
                Err(SignatureError::BadSignature {
                    key_id: ids[0],
                    tried: vec![format!("public key {}", ids[0])]
                }),
                "signature byte {i}"
            );
        }
        for i in 0..d.len() {
            let mut other = d.clone();
            other[i] ^= 0x80;
            assert!(matches!(
                verify(&ring, "sha256", &other, &good),
                Err(SignatureError::BadSignature { .. })
            ));
        }
        let mut bad = good.clone();
        bad[6] ^= 0x01;
        assert!(matches!(
            verify(&ring, "sha256", &d, &bad),
            Err(SignatureError::UnknownKey { .. })
        ));
    }
}

#[test]
fn rejects_rsa_signature_of_the_wrong_length_and_forgeries() {
    let key = TestKey::Rsa(rsa_key().clone());
    let (ring, ids) = keyring_of(&[&key]);
    let d = digest(HashAlgo::Sha256, b"x");
    let raw = key.raw_sign(HashAlgo::Sha256, &d);
    let id = ids[0];
    let bad = |signature: Vec<u8>| ImaSignature {
        hash_algo: HashAlgo::Sha256,
        key_id: id,
        signature,
    };
    for forged in [
        raw[1..].to_vec(),
        [&[0u8][..], &raw].concat(),
        vec![0; 256],
        vec![0xff; 256],
        vec![1],
    ] {
        assert!(matches!(
            verify_parsed(&ring, "sha256", &d, &bad(forged)),
            Err(SignatureError::BadSignature { .. })
        ));
    }
    // The same digest signed for SHA-512's DigestInfo does not pass as SHA-256.
    let d512 = digest(HashAlgo::Sha512, b"x");
    let sig = ImaSignature {
        hash_algo: HashAlgo::Sha256,
        key_id: id,
        signature: key.raw_sign(HashAlgo::Sha512, &d512),
    };
    assert!(verify_parsed(&ring, "sha256", &d, &sig).is_err());
}

#[test]
fn tries_every_key_sharing_a_key_id() {
    let skid = [9u8, 9, 9, 9, 0xca, 0xfe, 0xba, 0xbe];
    let (a, b, outsider) = (p256_key(11), p256_key(12), p256_key(13));
    let mut ring = Keyring::new();
    let id_a = ring
        .add_certificate_der(&p256_cert(&a, "key A", Some(&skid)))
        .unwrap();
    let id_b = ring
        .add_certificate_der(&p256_cert(&b, "key B", Some(&skid)))
        .unwrap();
    assert_eq!(id_a, KeyId(0xcafebabe));
    assert_eq!(id_b, id_a);
    assert_eq!(ring.with_key_id(id_a).count(), 2);
    let d = digest(HashAlgo::Sha256, b"x");
    let by_b = TestKey::P256(b).sign(HashAlgo::Sha256, &d, id_a);
    assert_eq!(
        verify(&ring, "sha256", &d, &by_b).unwrap().description,
        "CN=key B"
    );
    let by_outsider = TestKey::P256(outsider).sign(HashAlgo::Sha256, &d, id_a);
    let e = verify(&ring, "sha256", &d, &by_outsider).unwrap_err();
    assert_eq!(
        e,
        SignatureError::BadSignature {
            key_id: id_a,
            tried: vec!["CN=key A".into(), "CN=key B".into()]
        }
    );
    assert!(
        e.to_string().starts_with(
            "the signature does not verify with the keys with id cafebabe (CN=key A; CN=key B)"
        ),
        "{e}"
    );
    // An RSA signature and an ECDSA key with its id: a bad signature, not a panic.
    let rsa_sig = TestKey::Rsa(rsa_key().clone()).sign(HashAlgo::Sha256, &d, id_a);
    assert!(matches!(
        verify(&ring, "sha256", &d, &rsa_sig),
        Err(SignatureError::BadSignature { .. })
    ));
}

// ---- the keyring ---------------------------------------------------------

#[test]
fn key_ids_are_the_skid_tail_else_the_sha1_of_the_key() {
    let key = p256_key(21);
    let point = key.verifying_key().to_encoded_point(false);
    let sha1 = sha1::Sha1::digest(point.as_bytes());
    let sha1_id = KeyId::from_tail(&sha1).unwrap();

    let mut ring = Keyring::new();
    // No SKID (rcgen writes none for an end-entity certificate by default).
    let id = ring
        .add_certificate_der(&p256_cert(&key, "no skid", None))
        .unwrap();
    assert_eq!(id, sha1_id);
    // A SKID unrelated to the key wins.
    let id = ring
        .add_certificate_der(&p256_cert(&key, "skid", Some(&[1, 2, 3, 4, 5, 6])))
        .unwrap();
    assert_eq!(id, KeyId(0x03040506));
    // A bare public key: the SHA-1 again (the same key and id as the first: one copy).
    let id = ring.add_public_key_der(&p256_spki(&key)).unwrap();
    assert_eq!(id, sha1_id);
    let keys: Vec<_> = ring
        .keys()
        .map(|k| (k.key_id(), k.key_id_source(), k.description().to_string()))
        .collect();
    assert_eq!(
        keys,
        [
            (sha1_id, KeyIdSource::PublicKeySha1, "CN=no skid".into()),
            (
                KeyId(0x03040506),
                KeyIdSource::SubjectKeyIdentifier,
                "CN=skid".into()
            ),
        ]
    );

    // RSA: SHA-1 over the PKCS#1 RSAPublicKey (the BIT STRING contents).
    let rsa_der = rsa_key().to_public_key().to_pkcs1_der().unwrap();
    let want = KeyId::from_tail(&sha1::Sha1::digest(rsa_der.as_bytes())).unwrap();
    let mut ring = Keyring::new();
    assert_eq!(ring.add_public_key_der(&rsa_spki(rsa_key())).unwrap(), want);
    assert_eq!(
        ring.keys().next().unwrap().description(),
        format!("public key {want}")
    );

    // A SKID shorter than a key id can never be matched.
    let e = Keyring::new()
        .add_certificate_der(&p256_cert(&key, "short", Some(&[1, 2, 3])))
        .unwrap_err();
    assert_eq!(
        e,
        KeyringError::ShortSubjectKeyIdentifier {
            subject: "CN=short".into(),
            len: 3
        }
    );
}

#[test]
fn loads_a_pem_bundle_all_or_nothing() {
    let (a, b) = (p256_key(31), p256_key(32));
    let cert_pem = pem("CERTIFICATE", &p256_cert(&a, "a", Some(&[0xaa; 20])));
    let key_pem = pem("PUBLIC KEY", &p256_spki(&b));
    let bundle = format!("comment\n{cert_pem}\n{key_pem}");
    let ring = Keyring::from_pem(bundle.as_bytes()).unwrap();
    assert_eq!(ring.len(), 2);
    assert_eq!(ring.keys().next().unwrap().key_id(), KeyId(0xaaaaaaaa));

    let mut ring = Keyring::new();
    ring.add_pem(cert_pem.as_bytes()).unwrap();
    let private = a.to_pkcs8_pem(Default::default()).unwrap();
    for (input, want) in [
        (
            format!("{key_pem}{}", private.as_str()),
            KeyringError::PrivateKey {
                index: 2,
                label: "PRIVATE KEY".into(),
            },
        ),
        (
            format!("{key_pem}{}", pem("X509 CRL", &[1, 2, 3])),
            KeyringError::UnexpectedPemBlock {
                index: 2,
                label: "X509 CRL".into(),
            },
        ),
        (
            format!("{key_pem}{}", pem("CERTIFICATE", &[0x30, 0x03, 1, 2, 3])),
            KeyringError::InPemBlock {
                index: 2,
                label: "CERTIFICATE".into(),
                error: Box::new(KeyringError::MalformedCertificate(String::new())),
            },
        ),
        ("no PEM here".to_string(), KeyringError::NoKeys),
    ] {
        let e = ring.add_pem(input.as_bytes()).unwrap_err();
        match (&e, &want) {
            (
                KeyringError::InPemBlock { index, label, .. },
                KeyringError::InPemBlock {
                    index: i, label: l, ..
                },
            ) => {
                assert_eq!((index, label), (i, l))
            }
            _ => assert_eq!(e, want),
        }
        assert_eq!(ring.len(), 1, "{e}: the keyring is unchanged");
    }
    let e = ring.add_pem(&vec![b'x'; MAX_PEM_LEN + 1]).unwrap_err();
    assert!(matches!(e, KeyringError::TooLarge { .. }));
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<_> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

#[test]
fn add_der_takes_certificates_and_public_keys() {
    let key = p256_key(41);
    let mut ring = Keyring::new();
    ring.add_der(&p256_cert(&key, "c", Some(&[5; 8]))).unwrap();
    ring.add_der(&p384_spki(&p384_key(42))).unwrap();
    assert_eq!(ring.len(), 2);
    assert!(matches!(
        ring.add_der(b"\x30\x00"),
        Err(KeyringError::NotDer { .. })
    ));
    let mut trailing = p256_spki(&key);
    trailing.push(0);
    assert!(matches!(
        ring.add_public_key_der(&trailing),
        Err(KeyringError::MalformedPublicKey(_))
    ));
    assert!(matches!(
        ring.add_der(&vec![0x30; MAX_DER_LEN + 1]),
        Err(KeyringError::TooLarge { .. })
    ));
}

#[test]
fn refuses_keys_other_than_rsa_2048_to_4096_and_p256_p384() {
    let mut ring = Keyring::new();
    let small = testutil::rsa_key(1024, 5);
    let e = ring.add_public_key_der(&rsa_spki(&small)).unwrap_err();
    assert!(
        matches!(&e, KeyringError::UnsupportedKey { reason, .. } if reason == "an RSA-1024 key"),
        "{e}"
    );
    assert!(
        e.to_string().contains("RSA 2048–4096 or ECDSA P-256/P-384"),
        "{e}"
    );
    // An 8192-bit modulus (not a real key: only its size is looked at).
    let n = rsa::BigUint::from_bytes_be(&[0xff; 1024]);
    let big = rsa::RsaPublicKey::new_with_max_size(n, 65537u32.into(), 8192).unwrap();
    let e = ring
        .add_public_key_der(&big.to_public_key_der().unwrap().into_vec())
        .unwrap_err();
    assert!(
        matches!(&e, KeyringError::UnsupportedKey { reason, .. } if reason == "an RSA-8192 key"),
        "{e}"
    );
    // P-521: a P-384 key whose curve OID (1.3.132.0.34) is turned into 1.3.132.0.35.
    let mut spki = p384_spki(&p384_key(3));
    let at = spki
        .windows(7)
        .position(|w| w == [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22])
        .unwrap();
    spki[at + 6] = 0x23;
    let e = ring.add_public_key_der(&spki).unwrap_err();
    assert!(
        matches!(&e, KeyringError::UnsupportedKey { reason, .. } if reason == "an EC key on curve 1.3.132.0.35"),
        "{e}"
    );
    // Ed25519.
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let e = ring.add_public_key_der(&ed.public_key_der()).unwrap_err();
    assert!(
        matches!(&e, KeyringError::UnsupportedKey { reason, .. } if reason.contains("1.3.101.112")),
        "{e}"
    );
    // A P-256 SPKI whose point is not on the curve.
    let mut spki = p256_spki(&p256_key(4));
    let last = spki.len() - 1;
    spki[last] ^= 1;
    assert!(matches!(
        ring.add_public_key_der(&spki),
        Err(KeyringError::MalformedPublicKey(_))
    ));
    assert!(ring.is_empty());
    // 4096 is the largest accepted.
    let k4096 = testutil::rsa_key(4096, 6);
    ring.add_public_key_der(&rsa_spki(&k4096)).unwrap();
    assert_eq!(
        ring.keys().next().unwrap().algorithm(),
        KeyAlgorithm::Rsa { bits: 4096 }
    );
}

#[test]
fn holds_at_most_max_keys_and_each_key_once() {
    let mut ring = Keyring::new();
    let spki = p256_spki(&p256_key(50));
    ring.add_public_key_der(&spki).unwrap();
    ring.add_public_key_der(&spki).unwrap();
    assert_eq!(ring.len(), 1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(51);
    while ring.len() < MAX_KEYS {
        let k = p256::ecdsa::SigningKey::random(&mut rng);
        ring.add_public_key_der(&p256_spki(&k)).unwrap();
    }
    let k = p256::ecdsa::SigningKey::random(&mut rng);
    assert_eq!(
        ring.add_public_key_der(&p256_spki(&k)),
        Err(KeyringError::TooManyKeys)
    );
    // Re-adding a key it holds is still fine.
    ring.add_public_key_der(&spki).unwrap();
    assert_eq!(ring.len(), MAX_KEYS);
}

// ---- arbitrary input -----------------------------------------------------

fn small_keyring() -> &'static (Keyring, Vec<KeyId>) {
    static K: OnceLock<(Keyring, Vec<KeyId>)> = OnceLock::new();
    K.get_or_init(|| {
        let keys = [TestKey::Rsa(rsa_key().clone()), TestKey::P256(p256_key(1))];
        keyring_of(&keys.iter().collect::<Vec<_>>())
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let (ring, _) = small_keyring();
        if let Ok(sig) = ImaSignature::parse(&bytes) {
            prop_assert_eq!(sig.to_bytes(), bytes.clone());
        }
        for alg in ALGS {
            let d = vec![0u8; alg.digest_len()];
            prop_assert!(verify(ring, alg.name(), &d, &bytes).is_err());
        }
        let _ = Keyring::new().add_der(&bytes);
        let _ = Keyring::new().add_pem(&bytes);
    }

    #[test]
    fn well_formed_headers_with_arbitrary_signatures_never_verify(
        alg in 0..5usize,
        key in 0..2usize,
        sig in proptest::collection::vec(any::<u8>(), 1..600),
        digest_byte in any::<u8>(),
    ) {
        let (ring, ids) = small_keyring();
        let alg = ALGS[alg];
        let blob = ImaSignature { hash_algo: alg, key_id: ids[key], signature: sig }.to_bytes();
        let d = vec![digest_byte; alg.digest_len()];
        let e = verify(ring, alg.name(), &d, &blob).unwrap_err();
        let is_bad = matches!(e, SignatureError::BadSignature { .. });
        prop_assert!(is_bad, "{}", e);
    }
}

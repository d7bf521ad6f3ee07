//! Builders for AKs, quotes, signatures and policies, for tests, benches and
//! fuzzing (`feature = "testutil"`). Keys are seeded, so fixtures are reproducible.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::OnceLock;

use rand::SeedableRng;
use rand_core::CryptoRngCore;
use rsa::traits::PublicKeyParts;

use super::*;
use crate::tpm::attest::{encode_quote_attest, QuoteInfo};
use crate::tpm::public::{
    parse_tpm2b_public, ObjectAttributes, TPM_ALG_ECC, TPM_ALG_ECDSA, TPM_ALG_NULL, TPM_ALG_RSA,
    TPM_ALG_RSAPSS, TPM_ALG_RSASSA, TPM_ECC_NIST_P256,
};

/// What `tpm2_createak` sets: fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, restricted, sign.
pub const AK_ATTRIBUTES: u32 = ObjectAttributes::FIXED_TPM
    | ObjectAttributes::FIXED_PARENT
    | ObjectAttributes::SENSITIVE_DATA_ORIGIN
    | ObjectAttributes::USER_WITH_AUTH
    | ObjectAttributes::RESTRICTED
    | ObjectAttributes::SIGN;

#[derive(Clone)]
pub enum SigningKey {
    Rsa(Box<rsa::RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
}

/// A software AK and the public-area fields to describe it with.
#[derive(Clone)]
pub struct TestAk {
    pub key: SigningKey,
    /// Scheme written into the public area (`TPM_ALG_NULL` for none) and used to sign.
    pub scheme_alg: u16,
    pub hash: HashAlg,
    pub name_alg: HashAlg,
    pub attributes: u32,
    /// Lie about RSA keyBits in the public area.
    pub key_bits_override: Option<u16>,
    /// Lie about the ECC curve in the public area.
    pub curve_override: Option<u16>,
}

/// A deterministic RSA key (seeded), for reproducible tests.
pub fn rsa_key(bits: usize, seed: u64) -> rsa::RsaPrivateKey {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    rsa::RsaPrivateKey::new(&mut rng, bits).expect("RSA key generation")
}

pub fn shared_rsa_ak() -> &'static TestAk {
    static AK: OnceLock<TestAk> = OnceLock::new();
    AK.get_or_init(|| TestAk::rsa(rsa_key(2048, 1), TPM_ALG_RSASSA))
}

pub fn shared_rsapss_ak() -> &'static TestAk {
    static AK: OnceLock<TestAk> = OnceLock::new();
    AK.get_or_init(|| TestAk::rsa(rsa_key(2048, 2), TPM_ALG_RSAPSS))
}

pub fn shared_p256_ak() -> &'static TestAk {
    static AK: OnceLock<TestAk> = OnceLock::new();
    AK.get_or_init(|| {
        TestAk::p256(p256::ecdsa::SigningKey::random(
            &mut rand::rngs::StdRng::seed_from_u64(3),
        ))
    })
}

fn tpm2b(out: &mut Vec<u8>, b: &[u8]) {
    out.extend((b.len() as u16).to_be_bytes());
    out.extend(b);
}

impl TestAk {
    pub fn rsa(key: rsa::RsaPrivateKey, scheme_alg: u16) -> Self {
        Self::with(SigningKey::Rsa(Box::new(key)), scheme_alg)
    }

    pub fn p256(key: p256::ecdsa::SigningKey) -> Self {
        Self::with(SigningKey::P256(key), TPM_ALG_ECDSA)
    }

    fn with(key: SigningKey, scheme_alg: u16) -> Self {
        Self {
            key,
            scheme_alg,
            hash: HashAlg::Sha256,
            name_alg: HashAlg::Sha256,
            attributes: AK_ATTRIBUTES,
            key_bits_override: None,
            curve_override: None,
        }
    }

    /// The `TPM2B_PUBLIC` a TPM would report for this key.
    pub fn public_bytes(&self) -> Vec<u8> {
        let mut t = Vec::new();
        let kind = match self.key {
            SigningKey::Rsa(_) => TPM_ALG_RSA,
            SigningKey::P256(_) => TPM_ALG_ECC,
        };
        t.extend(kind.to_be_bytes());
        t.extend(self.name_alg.to_tpm().to_be_bytes());
        t.extend(self.attributes.to_be_bytes());
        tpm2b(&mut t, &[]);
        t.extend(TPM_ALG_NULL.to_be_bytes()); // symmetric
        t.extend(self.scheme_alg.to_be_bytes());
        if self.scheme_alg != TPM_ALG_NULL {
            t.extend(self.hash.to_tpm().to_be_bytes());
        }
        match &self.key {
            SigningKey::Rsa(k) => {
                let n = k.n().to_bytes_be();
                let bits = self.key_bits_override.unwrap_or((n.len() * 8) as u16);
                t.extend(bits.to_be_bytes());
                t.extend(0u32.to_be_bytes());
                tpm2b(&mut t, &n);
            }
            SigningKey::P256(k) => {
                t.extend(
                    self.curve_override
                        .unwrap_or(TPM_ECC_NIST_P256)
                        .to_be_bytes(),
                );
                t.extend(TPM_ALG_NULL.to_be_bytes()); // kdf
                let point = k.verifying_key().to_encoded_point(false);
                tpm2b(&mut t, point.x().unwrap());
                tpm2b(&mut t, point.y().unwrap());
            }
        }
        let mut out = Vec::new();
        tpm2b(&mut out, &t);
        out
    }

    pub fn public(&self) -> TpmPublic {
        parse_tpm2b_public(&self.public_bytes()).expect("test AK public area parses")
    }

    /// A `TPMT_SIGNATURE` over `msg` with this AK's scheme and hash.
    pub fn sign(&self, rng: &mut impl CryptoRngCore, msg: &[u8]) -> Vec<u8> {
        let digest = self.hash.digest(msg);
        let sig = match &self.key {
            SigningKey::Rsa(k) if self.scheme_alg == TPM_ALG_RSAPSS => {
                let sig = k
                    .sign_with_rng(rng, pss(self.hash), &digest)
                    .expect("PSS signing");
                TpmSignature::RsaPss {
                    hash: self.hash,
                    sig,
                }
            }
            SigningKey::Rsa(k) => {
                let sig = k.sign(pkcs1(self.hash), &digest).expect("PKCS#1 signing");
                TpmSignature::RsaSsa {
                    hash: self.hash,
                    sig,
                }
            }
            SigningKey::P256(k) => {
                use p256::ecdsa::signature::hazmat::PrehashSigner;
                let sig: p256::ecdsa::Signature = k.sign_prehash(&digest).expect("ECDSA signing");
                let (r, s) = sig.split_bytes();
                TpmSignature::Ecdsa {
                    hash: self.hash,
                    r: r.to_vec(),
                    s: s.to_vec(),
                }
            }
        };
        sig.to_bytes()
    }
}

fn pkcs1(h: HashAlg) -> rsa::Pkcs1v15Sign {
    match h {
        HashAlg::Sha1 => rsa::Pkcs1v15Sign::new::<sha1::Sha1>(),
        HashAlg::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
        HashAlg::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
        HashAlg::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
    }
}

fn pss(h: HashAlg) -> rsa::Pss {
    match h {
        HashAlg::Sha1 => rsa::Pss::new::<sha1::Sha1>(),
        HashAlg::Sha256 => rsa::Pss::new::<sha2::Sha256>(),
        HashAlg::Sha384 => rsa::Pss::new::<sha2::Sha384>(),
        HashAlg::Sha512 => rsa::Pss::new::<sha2::Sha512>(),
    }
}

/// A policy requiring exactly `pcrs` (sha256 bank).
pub fn policy_for(pcrs: &[(u32, Vec<u8>)]) -> Policy {
    let mut text = String::from("schema = 0\nname = \"test\"\n[pcrs.sha256]\n");
    for (i, v) in pcrs {
        text.push_str(&format!("{i} = \"{}\"\n", hex::encode(v)));
    }
    Policy::parse("test.toml", &text).expect("test policy parses")
}

/// A consistent quote: AK, nonce, PCRs 0, 1, 2, 13, TPMS_ATTEST and a matching policy.
#[derive(Clone)]
pub struct Scenario {
    pub ak: TestAk,
    pub nonce: Vec<u8>,
    pub pcrs: Vec<(u32, Vec<u8>)>,
    pub attest: Attest,
    pub policy: Policy,
    pub previous_clock: Option<ClockInfo>,
}

impl Scenario {
    pub fn new(ak: &TestAk) -> Self {
        let pcrs: Vec<(u32, Vec<u8>)> = [0u32, 1, 2, 13]
            .iter()
            .map(|i| (*i, Sha256::digest(i.to_be_bytes()).to_vec()))
            .collect();
        let policy = policy_for(&pcrs);
        Self::with(ak, pcrs, policy)
    }

    /// A consistent quote over `pcrs` (sha256 bank, ascending), judged by `policy`.
    pub fn with(ak: &TestAk, pcrs: Vec<(u32, Vec<u8>)>, policy: Policy) -> Self {
        let nonce = vec![0x4e; 32];
        let values: Vec<&[u8]> = pcrs.iter().map(|(_, v)| v.as_slice()).collect();
        let indices: Vec<u32> = pcrs.iter().map(|(i, _)| *i).collect();
        let public = ak.public();
        let attest = Attest {
            qualified_signer: public.name(),
            extra_data: nonce.clone(),
            clock_info: ClockInfo {
                clock: 1_000_000,
                reset_count: 5,
                restart_count: 2,
                safe: true,
            },
            firmware_version: 0x2023_0101,
            quote: QuoteInfo {
                pcr_select: PcrSelection::sha256_only(&indices),
                pcr_digest: pcr_digest(HashAlg::Sha256, &values),
            },
        };
        Self {
            ak: ak.clone(),
            nonce,
            pcrs,
            attest,
            policy,
            previous_clock: None,
        }
    }

    pub fn attest_bytes(&self) -> Vec<u8> {
        encode_quote_attest(&self.attest)
    }

    /// The attest bytes and a signature over them by the scenario's AK.
    pub fn signed(&self) -> (Vec<u8>, Vec<u8>) {
        let attest = self.attest_bytes();
        let sig = self
            .ak
            .sign(&mut rand::rngs::StdRng::seed_from_u64(7), &attest);
        (attest, sig)
    }

    /// Verifies `attest` + `signature` with the scenario's AK, nonce, PCRs and policy.
    pub fn verify_bytes(&self, attest: &[u8], signature: &[u8]) -> QuoteOutcome {
        self.verify_signed_with_logs(attest, signature, None, None)
    }

    /// Signs the scenario's attest and verifies it together with event logs.
    pub fn verify_with_logs(
        &self,
        uefi_log: Option<&[u8]>,
        ima_log: Option<&[u8]>,
    ) -> QuoteOutcome {
        let (attest, signature) = self.signed();
        self.verify_signed_with_logs(&attest, &signature, uefi_log, ima_log)
    }

    /// Verifies already signed `attest` bytes together with event logs (benches
    /// sign once with [`Self::signed`] so they time verification only).
    pub fn verify_signed_with_logs(
        &self,
        attest: &[u8],
        signature: &[u8],
        uefi_log: Option<&[u8]>,
        ima_log: Option<&[u8]>,
    ) -> QuoteOutcome {
        self.verify_signed_with_all_logs(attest, signature, uefi_log, ima_log, None)
    }

    /// Signs the scenario's attest and verifies it with a UEFI, IMA and CEL log.
    pub fn verify_with_all_logs(
        &self,
        uefi_log: Option<&[u8]>,
        ima_log: Option<&[u8]>,
        cel_log: Option<&[u8]>,
    ) -> QuoteOutcome {
        let (attest, signature) = self.signed();
        self.verify_signed_with_all_logs(&attest, &signature, uefi_log, ima_log, cel_log)
    }

    /// Verifies already signed `attest` bytes together with every kind of log.
    pub fn verify_signed_with_all_logs(
        &self,
        attest: &[u8],
        signature: &[u8],
        uefi_log: Option<&[u8]>,
        ima_log: Option<&[u8]>,
        cel_log: Option<&[u8]>,
    ) -> QuoteOutcome {
        self.verify_signed_cached(attest, signature, uefi_log, ima_log, cel_log, None)
    }

    /// [`Self::verify_signed_with_all_logs`] with a measured-boot cache.
    pub fn verify_signed_cached(
        &self,
        attest: &[u8],
        signature: &[u8],
        uefi_log: Option<&[u8]>,
        ima_log: Option<&[u8]>,
        cel_log: Option<&[u8]>,
        cache: Option<&MeasuredBootCache>,
    ) -> QuoteOutcome {
        let evidence = QuoteEvidence {
            attest,
            signature,
            pcrs_sha256: &self.pcrs,
            uefi_log,
            ima_log,
            cel_log,
            ima_first_entry: 0,
        };
        self.verify_evidence(&evidence, cache, None)
    }

    /// Verifies `evidence` against the scenario's AK, nonce, clock and policy.
    fn verify_evidence(
        &self,
        evidence: &QuoteEvidence<'_>,
        cache: Option<&MeasuredBootCache>,
        ima_state: Option<&crate::verify::ImaState>,
    ) -> QuoteOutcome {
        let ak = self.ak.public();
        let check = QuoteCheck {
            ak: &ak,
            expected_nonce: &self.nonce,
            previous_clock: self.previous_clock,
            policy: &self.policy,
            cache,
            ima_state,
        };
        verify_quote(&check, evidence)
    }

    /// Signs the scenario's attest and verifies it with an IMA log that starts
    /// at entry `first_entry`, against a kept IMA state.
    pub fn verify_ima_from(
        &self,
        ima_log: &[u8],
        first_entry: u64,
        ima_state: Option<&crate::verify::ImaState>,
    ) -> QuoteOutcome {
        let (attest, signature) = self.signed();
        self.verify_signed_ima_from(&attest, &signature, ima_log, first_entry, ima_state)
    }

    /// [`Self::verify_ima_from`] with an attest already signed ([`Self::signed`]).
    pub fn verify_signed_ima_from(
        &self,
        attest: &[u8],
        signature: &[u8],
        ima_log: &[u8],
        first_entry: u64,
        ima_state: Option<&crate::verify::ImaState>,
    ) -> QuoteOutcome {
        let evidence = QuoteEvidence {
            attest,
            signature,
            pcrs_sha256: &self.pcrs,
            ima_log: Some(ima_log),
            ima_first_entry: first_entry,
            ..Default::default()
        };
        self.verify_evidence(&evidence, None, ima_state)
    }

    /// Signs the scenario's attest and verifies it.
    pub fn verify(&self) -> QuoteOutcome {
        let (attest, sig) = self.signed();
        self.verify_bytes(&attest, &sig)
    }
}

/// The `TPM2B_PUBLIC` of an RSA-2048 EK made from the TCG default EK template
/// (EK Credential Profile, template L-1): fixedTPM, fixedParent,
/// sensitiveDataOrigin, adminWithPolicy, restricted, decrypt; the standard EK
/// policy; AES-128-CFB; exponent 0 (65537).
pub fn rsa_ek_public_bytes(key: &rsa::RsaPublicKey) -> Vec<u8> {
    rsa_ek_public_bytes_with(key, HashAlg::Sha256, 128)
}

/// EK attributes of the profile's templates (low range; the high range adds userWithAuth).
const EK_ATTRIBUTES: u32 = ObjectAttributes::FIXED_TPM
    | ObjectAttributes::FIXED_PARENT
    | ObjectAttributes::SENSITIVE_DATA_ORIGIN
    | 0x0000_0080 // adminWithPolicy
    | ObjectAttributes::RESTRICTED
    | 0x0002_0000; // decrypt

fn ek_head(t: &mut Vec<u8>, alg: u16, name_alg: HashAlg, sym_bits: u16) {
    const EK_POLICY: &str = "837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa";
    t.extend(alg.to_be_bytes());
    t.extend(name_alg.to_tpm().to_be_bytes());
    t.extend(EK_ATTRIBUTES.to_be_bytes());
    tpm2b(t, &hex::decode(EK_POLICY).expect("hex"));
    t.extend(0x0006u16.to_be_bytes()); // TPM_ALG_AES
    t.extend(sym_bits.to_be_bytes());
    t.extend(0x0043u16.to_be_bytes()); // TPM_ALG_CFB
    t.extend(TPM_ALG_NULL.to_be_bytes()); // scheme
}

/// An RSA EK's `TPM2B_PUBLIC` with the given nameAlg and AES key size (the
/// profile's templates L-1, H-1, H-6 and H-7 differ in these, the key size
/// and the policy).
pub fn rsa_ek_public_bytes_with(
    key: &rsa::RsaPublicKey,
    name_alg: HashAlg,
    sym_bits: u16,
) -> Vec<u8> {
    let mut t = Vec::new();
    ek_head(&mut t, TPM_ALG_RSA, name_alg, sym_bits);
    t.extend((key.n().bits() as u16).to_be_bytes());
    t.extend(0u32.to_be_bytes());
    tpm2b(&mut t, &key.n().to_bytes_be());
    let mut out = Vec::new();
    tpm2b(&mut out, &t);
    out
}

/// An ECC EK's `TPM2B_PUBLIC` (templates L-2, H-2, H-3): curve `curve`
/// (TPM_ECC_*), point `x`, `y`, KDF and scheme NULL.
pub fn ecc_ek_public_bytes(
    curve: u16,
    x: &[u8],
    y: &[u8],
    name_alg: HashAlg,
    sym_bits: u16,
) -> Vec<u8> {
    let mut t = Vec::new();
    ek_head(&mut t, crate::tpm::public::TPM_ALG_ECC, name_alg, sym_bits);
    t.extend(curve.to_be_bytes());
    t.extend(TPM_ALG_NULL.to_be_bytes()); // kdf
    tpm2b(&mut t, x);
    tpm2b(&mut t, y);
    let mut out = Vec::new();
    tpm2b(&mut out, &t);
    out
}

/// A software EK's private key, for [`activate_credential_with`].
pub enum SoftEk {
    Rsa(Box<rsa::RsaPrivateKey>),
    P256(p256::SecretKey),
    P384(p384::SecretKey),
}

/// What a TPM does in `TPM2_ActivateCredential` with an RSA EK of nameAlg
/// SHA-256 and AES-128 (template L-1).
pub fn activate_credential(
    ek: &rsa::RsaPrivateKey,
    name: &[u8],
    credential_blob: &[u8],
    encrypted_secret: &[u8],
) -> Result<Vec<u8>, &'static str> {
    activate_credential_with(
        &SoftEk::Rsa(Box::new(ek.clone())),
        HashAlg::Sha256,
        128,
        name,
        credential_blob,
        encrypted_secret,
    )
}

/// What a TPM does in `TPM2_ActivateCredential` with EK `ek` (nameAlg
/// `name_alg`, AES-`sym_bits`-CFB), for the object named `name`: recovers
/// the seed (RSA-OAEP, label "IDENTITY"; or ECDH and KDFe), checks the
/// integrity HMAC and decrypts the credential. Written from the TPM 2.0 spec
/// (Part 1, 24.4–24.5, C.6.4), apart from `make_credential`; the real oracle
/// for the layout is swtpm (tests/tests/oracle_credential.rs).
pub fn activate_credential_with(
    ek: &SoftEk,
    name_alg: HashAlg,
    sym_bits: u16,
    name: &[u8],
    credential_blob: &[u8],
    encrypted_secret: &[u8],
) -> Result<Vec<u8>, &'static str> {
    use crate::tpm::credential::{hmac, kdfa, kdfe};
    use aes::cipher::{AsyncStreamCipher, KeyIvInit};
    let bits = 8 * name_alg.digest_len() as u32;
    let point = |len: usize| -> Result<(Vec<u8>, Vec<u8>), &'static str> {
        let mut r = encrypted_secret;
        let mut take = || -> Result<Vec<u8>, &'static str> {
            let n = r
                .get(..2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
                .ok_or("point")?;
            let v = r.get(2..2 + n).ok_or("point")?.to_vec();
            r = &r[2 + n..];
            Ok(v)
        };
        let (x, y) = (take()?, take()?);
        if x.len() != len || y.len() != len || !r.is_empty() {
            return Err("point");
        }
        Ok((x, y))
    };
    let seed = match ek {
        SoftEk::Rsa(k) => {
            let label = "IDENTITY\0";
            match name_alg {
                HashAlg::Sha384 => k.decrypt(
                    rsa::Oaep::new_with_label::<sha2::Sha384, _>(label),
                    encrypted_secret,
                ),
                HashAlg::Sha512 => k.decrypt(
                    rsa::Oaep::new_with_label::<sha2::Sha512, _>(label),
                    encrypted_secret,
                ),
                _ => k.decrypt(
                    rsa::Oaep::new_with_label::<Sha256, _>(label),
                    encrypted_secret,
                ),
            }
            .map_err(|_| "oaep")?
        }
        SoftEk::P256(k) => {
            let (x, y) = point(32)?;
            let q = p256::PublicKey::from_sec1_bytes(&[&[4u8][..], &x, &y].concat())
                .map_err(|_| "point")?;
            let z = p256::ecdh::diffie_hellman(k.to_nonzero_scalar(), q.as_affine());
            let own = p256::EncodedPoint::from(k.public_key());
            kdfe(
                name_alg,
                z.raw_secret_bytes(),
                b"IDENTITY",
                &x,
                own.x().ok_or("point")?,
                bits,
            )
        }
        SoftEk::P384(k) => {
            let (x, y) = point(48)?;
            let q = p384::PublicKey::from_sec1_bytes(&[&[4u8][..], &x, &y].concat())
                .map_err(|_| "point")?;
            let z = p384::ecdh::diffie_hellman(k.to_nonzero_scalar(), q.as_affine());
            let own = p384::EncodedPoint::from(k.public_key());
            kdfe(
                name_alg,
                z.raw_secret_bytes(),
                b"IDENTITY",
                &x,
                own.x().ok_or("point")?,
                bits,
            )
        }
    };
    let hlen = credential_blob
        .get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        .ok_or("short blob")?;
    let (mac, enc) = credential_blob
        .get(2..)
        .filter(|r| r.len() >= hlen)
        .ok_or("short blob")?
        .split_at(hlen);
    let hmac_key = kdfa(name_alg, &seed, b"INTEGRITY", &[], &[], bits);
    let want = hmac(name_alg, &hmac_key, &[enc, name]);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(want.as_slice(), mac)) {
        return Err("integrity");
    }
    let sym = kdfa(name_alg, &seed, b"STORAGE", name, &[], u32::from(sym_bits));
    let mut plain = enc.to_vec();
    let iv = [0u8; 16];
    match sym_bits {
        128 => cfb_mode::Decryptor::<aes::Aes128>::new(sym.as_slice().into(), &iv.into())
            .decrypt(&mut plain),
        _ => cfb_mode::Decryptor::<aes::Aes256>::new(sym.as_slice().into(), &iv.into())
            .decrypt(&mut plain),
    }
    let n = plain
        .get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        .ok_or("short credential")?;
    plain
        .get(2..2 + n)
        .map(<[u8]>::to_vec)
        .ok_or("short credential")
}

/// `[measured_boot]` rules (every kind) that the Google Compute Engine
/// Ubuntu 21.04 UEFI log of the test data in `tests/data/eventlogs`
/// (`tpm2-tools/event-gce-ubuntu-2104-log.bin`, 112 events) satisfies.
pub const GCE_MEASURED_BOOT_RULES: &str = r#"
pcrs = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14]
secure_boot = false
pk = ["sha256:d1d217acf60ba4e4a890210322d006d673c0b82de9d65ad7f2d55897635429e2"]
kek = ["sha256:a1117f516a32cefcba3f2d1ace10a87972fd6bbe8fe0d0b996e09e65d802a503"]
crtm_versions = ["GCE Virtual Firmware v1"]
boot_applications = [
  "sha256:d99c93fcb042dbe52707bbde371c75fcf081dd5b0c88a195d44cc57536f6f521",
  "sha256:b0a836fec2faf4a9bea0e1a5f1945bc86ddc03ac98ce0ae172ed9b1e536d7595",
]
kernel_cmdline_patterns = ['/boot/vmlinuz-\S+ root=PARTUUID=\S+ ro .*']
[measured_boot.after_separator]
"4" = ["EV_EFI_BOOT_SERVICES_APPLICATION"]
"5" = ["EV_EFI_GPT_EVENT", "EV_EFI_ACTION"]
"7" = ["EV_EFI_VARIABLE_AUTHORITY"]
"#;

/// The sha256 values `pcrs` hold after the boot a UEFI log records (its
/// replay; a PCR it never extends holds its initial value).
pub fn replayed_pcrs(uefi_log: &[u8], pcrs: &[u32]) -> Vec<(u32, Vec<u8>)> {
    use crate::eventlog::uefi;
    replayed_pcrs_of(
        &uefi::parse(uefi_log, &uefi::Limits::default()).unwrap(),
        pcrs,
    )
}

/// [`replayed_pcrs`] of a parsed log: what an honest TPM that measured this
/// boot would quote.
pub fn replayed_pcrs_of(
    log: &crate::eventlog::uefi::EventLog,
    pcrs: &[u32],
) -> Vec<(u32, Vec<u8>)> {
    use crate::eventlog::uefi;
    let replay = uefi::replay(log);
    pcrs.iter()
        .map(|i| {
            let v = replay.pcr(HashAlg::Sha256, *i).map_or_else(
                || uefi::initial_pcr_value(HashAlg::Sha256, *i, log.startup_locality),
                <[u8]>::to_vec,
            );
            (*i, v)
        })
        .collect()
}

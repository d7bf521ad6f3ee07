//! Which of the TPM's endorsement keys the attestor uses.
//!
//! A TPM may hold several EKs, each made from a template of the TCG EK
//! Credential Profile (2.5, §2.2.1.4–5) and each with its certificate at its
//! own NV index. The attestor uses one of them for credential activation and
//! as the AK's parent; which one is kept in the state directory (`ek`), since
//! the stored AK loads only under the EK it was made under.

use std::fmt;
use std::path::Path;

use tss_esapi::abstraction::AsymmetricAlgorithmSelection;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;

use super::TpmError;

/// The file in the state directory that names the EK the AK was made under.
pub(crate) const EK_FILE: &str = "ek";

/// An EK template of the profile the attestor can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EkKind {
    /// Template L-1 (low range): RSA 2048, SHA-256, AES-128; certificate at 0x01c00002.
    Rsa2048,
    /// Template L-2 (low range): NIST P-256, SHA-256, AES-128; certificate at 0x01c0000a.
    EccP256,
    /// Template H-6 (high range): RSA 3072, SHA-384, AES-256; certificate at 0x01c0001c.
    Rsa3072,
    /// Template H-3 (high range): NIST P-384, SHA-384, AES-256; certificate at 0x01c00016.
    EccP384,
    /// Template H-7 (high range): RSA 4096, SHA-384, AES-256; certificate at 0x01c0001e.
    Rsa4096,
}

impl EkKind {
    /// Every kind, in the order `auto` tries them: the low-range templates
    /// first (what most TPMs carry, and what Assay used before there was a choice).
    pub const ALL: [EkKind; 5] = [
        EkKind::Rsa2048,
        EkKind::EccP256,
        EkKind::Rsa3072,
        EkKind::EccP384,
        EkKind::Rsa4096,
    ];

    /// The range that holds every kind's certificate index.
    pub(crate) const FIRST_CERTIFICATE_INDEX: u32 = 0x01c0_0002;
    pub(crate) const LAST_CERTIFICATE_INDEX: u32 = 0x01c0_001e;

    pub fn name(self) -> &'static str {
        match self {
            EkKind::Rsa2048 => "rsa2048",
            EkKind::EccP256 => "ecc-p256",
            EkKind::Rsa3072 => "rsa3072",
            EkKind::EccP384 => "ecc-p384",
            EkKind::Rsa4096 => "rsa4096",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The NV index of this EK's certificate.
    pub fn certificate_index(self) -> u32 {
        match self {
            EkKind::Rsa2048 => 0x01c0_0002,
            EkKind::EccP256 => 0x01c0_000a,
            EkKind::EccP384 => 0x01c0_0016,
            EkKind::Rsa3072 => 0x01c0_001c,
            EkKind::Rsa4096 => 0x01c0_001e,
        }
    }

    /// High-range templates set userWithAuth: the EK's (empty) authValue
    /// serves for the USER role, where the low range needs PolicySecret.
    pub(crate) fn user_with_auth(self) -> bool {
        !matches!(self, EkKind::Rsa2048 | EkKind::EccP256)
    }

    pub(crate) fn selection(self) -> AsymmetricAlgorithmSelection {
        match self {
            EkKind::Rsa2048 => AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
            EkKind::Rsa3072 => AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa3072),
            EkKind::Rsa4096 => AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa4096),
            EkKind::EccP256 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
            EkKind::EccP384 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP384),
        }
    }
}

impl fmt::Display for EkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `ek` setting: a kind, or `auto` (the first kind whose certificate is in NV).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EkChoice {
    #[default]
    Auto,
    Kind(EkKind),
}

impl std::str::FromStr for EkChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(EkChoice::Auto);
        }
        EkKind::parse(s).map(EkChoice::Kind).ok_or_else(|| {
            let names: Vec<&str> = EkKind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown EK `{s}`: give auto or one of {}", names.join(", "))
        })
    }
}

/// The EK kind kept in `dir`, if any.
pub(crate) fn read_kept(dir: &Path) -> Result<Option<EkKind>, TpmError> {
    let path = dir.join(EK_FILE);
    let text = match std::fs::read(&path) {
        Ok(b) if b.len() <= 64 => String::from_utf8_lossy(&b).trim().to_string(),
        Ok(b) => {
            return Err(TpmError::State {
                path,
                reason: format!("{} bytes; it holds an EK name such as rsa2048", b.len()),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(TpmError::State {
                path,
                reason: format!("cannot read it: {e}"),
            })
        }
    };
    EkKind::parse(&text).map(Some).ok_or(TpmError::State {
        path,
        reason: format!("`{text}` is not an EK the attestor knows"),
    })
}

/// Keeps `kind` in `dir` (before the AK made under it is committed).
pub(crate) fn keep(dir: &Path, kind: EkKind) -> Result<(), TpmError> {
    let path = dir.join(EK_FILE);
    crate::files::write_private_atomic(&path, format!("{kind}\n").as_bytes())
        .map_err(|reason| TpmError::State { path, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_certificate_index_is_in_the_range_auto_asks_for() {
        for k in EkKind::ALL {
            let i = k.certificate_index();
            assert!(
                (EkKind::FIRST_CERTIFICATE_INDEX..=EkKind::LAST_CERTIFICATE_INDEX).contains(&i),
                "{k}"
            );
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for k in EkKind::ALL {
            assert_eq!(k.name().parse::<EkChoice>(), Ok(EkChoice::Kind(k)));
        }
        assert_eq!("auto".parse::<EkChoice>(), Ok(EkChoice::Auto));
        let e = "ecc-p521".parse::<EkChoice>().unwrap_err();
        assert!(e.contains("rsa2048") && e.contains("ecc-p384"), "{e}");
    }

    #[test]
    fn kept_kind_round_trips_and_garbage_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read_kept(d.path()).unwrap(), None);
        keep(d.path(), EkKind::EccP384).unwrap();
        assert_eq!(read_kept(d.path()).unwrap(), Some(EkKind::EccP384));
        std::fs::write(d.path().join(EK_FILE), "dsa\n").unwrap();
        assert!(read_kept(d.path()).is_err());
        std::fs::write(d.path().join(EK_FILE), vec![b'a'; 100]).unwrap();
        assert!(read_kept(d.path()).is_err());
    }
}

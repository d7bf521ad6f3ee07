//! A test PKI for the TLS clients' negative tests: a CA (rcgen) and the
//! server certificates it signs for chosen names (DNS names or IP addresses),
//! as PEM files in a temporary directory removed on drop. Two `Pki`s never
//! share a key, so one's certificates do not chain to the other's CA.

use std::path::{Path, PathBuf};

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use tempfile::TempDir;

pub struct Pki {
    dir: TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    /// A fresh CA named `name`.
    pub fn new(name: &str) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("assay-pki-").tempdir()?;
        let ca_key = KeyPair::generate()?;
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = p.self_signed(&ca_key)?;
        std::fs::write(dir.path().join("ca.pem"), ca.pem())?;
        Ok(Self { dir, ca, ca_key })
    }

    /// The CA certificate (PEM), for a client's trust store.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A server certificate for `names` signed by this CA: `<stem>.pem` and
    /// `<stem>.key` (mode 0600) in this PKI's directory.
    pub fn server(&self, stem: &str, names: &[&str]) -> Result<(PathBuf, PathBuf)> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::default();
        p.distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or(stem));
        p.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName((*n).to_string().try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = p.signed_by(&key, &self.ca, &self.ca_key)?;
        let (c, k) = (
            self.dir.path().join(format!("{stem}.pem")),
            self.dir.path().join(format!("{stem}.key")),
        );
        std::fs::write(&c, cert.pem())?;
        std::fs::write(&k, key.serialize_pem())?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600))?;
        Ok((c, k))
    }
}

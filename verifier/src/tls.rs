//! TLS material: `assay-verifier init` makes a small private CA and a server
//! certificate for the verifier (rcgen), so a fresh install runs over TLS with
//! no other tool. Production deployments may point `tls.cert`/`tls.key` at
//! certificates from their own PKI instead.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// `[tls]`: the server's certificate, and the CA of role-carrying client
/// certificates.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// CA of the client certificates that carry roles (operator, auditor,
    /// orchestrator, node); default `<data_dir>/tls/clients-ca.pem`.
    pub client_ca: Option<PathBuf>,
    /// Leave every RPC open to any TLS client (no roles). Off by default.
    #[serde(default)]
    pub no_client_auth: bool,
}

/// Writes `ca.pem`, `server.pem` and `server.key` into `dir`. The server
/// certificate names `names` (DNS names or IP addresses) as SANs.
pub fn init_tls(dir: &Path, names: &[String]) -> anyhow::Result<()> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "Assay verifier CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;

    let key = KeyPair::generate()?;
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "assay-verifier");
    p.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(n.clone().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = p.signed_by(&key, &ca_cert, &ca_key)?;

    // A separate CA for client (role) certificates: its key stays with the
    // operator; the server CA's key is not kept at all.
    let clients_key = KeyPair::generate()?;
    let clients_cert = clients_ca_params().self_signed(&clients_key)?;

    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("ca.pem"), ca_cert.pem())?;
    std::fs::write(dir.join("server.pem"), cert.pem())?;
    crate::files::write_private(&dir.join("server.key"), key.serialize_pem().as_bytes())?;
    std::fs::write(dir.join("clients-ca.pem"), clients_cert.pem())?;
    crate::files::write_private(
        &dir.join("clients-ca.key"),
        clients_key.serialize_pem().as_bytes(),
    )?;
    Ok(())
}

fn clients_ca_params() -> CertificateParams {
    let mut clients = CertificateParams::default();
    clients
        .distinguished_name
        .push(DnType::CommonName, "Assay clients CA");
    clients.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    clients.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    clients
}

/// Writes `out.pem`/`out.key`: a client certificate for `name` carrying the
/// role URI `uri` (see `roles`), signed by the clients CA in `dir`.
pub fn client_cert(dir: &Path, name: &str, uri: &str, days: u32, out: &Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let ca_key_pem = std::fs::read_to_string(dir.join("clients-ca.key")).with_context(|| {
        format!(
            "{}/clients-ca.key (made by `assay-verifier init`)",
            dir.display()
        )
    })?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)?;
    // The issuer is the clients CA's name and key: re-deriving it from the
    // same parameters gives the same subject, so the chain verifies against
    // the clients-ca.pem the verifier trusts.
    let issuer = clients_ca_params().self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, name);
    p.subject_alt_names = vec![SanType::URI(uri.try_into()?)];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::days(i64::from(days.max(1)));
    let cert = p.signed_by(&key, &issuer, &ca_key)?;
    let mut pem = out.as_os_str().to_owned();
    pem.push(".pem");
    let mut keyf = out.as_os_str().to_owned();
    keyf.push(".key");
    std::fs::write(&pem, cert.pem())?;
    crate::files::write_private(Path::new(&keyf), key.serialize_pem().as_bytes())?;
    Ok(())
}

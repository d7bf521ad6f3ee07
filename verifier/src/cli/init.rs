//! `init` (TLS material for a new verifier) and `client-cert` (role certificates).

use std::path::PathBuf;

use clap::Args;

use super::output::outln;
use super::Exit;

#[derive(Args)]
pub struct InitArgs {
    /// Directory to write ca.pem, server.pem, server.key, clients-ca.pem and clients-ca.key into.
    #[arg(
        long,
        default_value = "/var/lib/assay-verifier/tls",
        value_name = "DIR"
    )]
    dir: PathBuf,
    /// A DNS name or IP address the server certificate is valid for (repeatable).
    #[arg(long = "name", value_name = "NAME", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()])]
    names: Vec<String>,
}

pub fn init(a: InitArgs) -> anyhow::Result<()> {
    assay_verifier::tls::init_tls(&a.dir, &a.names)?;
    let dir = a.dir.display();
    outln!("wrote {dir}/ca.pem, {dir}/server.pem, {dir}/server.key, {dir}/clients-ca.pem, {dir}/clients-ca.key");
    outln!("give {dir}/ca.pem to attestors (--ca)");
    outln!(
        "make role certificates with `assay-verifier client-cert --dir {dir} --role operator|auditor|orchestrator --name NAME`"
    );
    Ok(())
}

#[derive(Args)]
pub struct ClientCertArgs {
    /// The directory `init` wrote (clients-ca.pem, clients-ca.key).
    #[arg(
        long,
        default_value = "/var/lib/assay-verifier/tls",
        value_name = "DIR"
    )]
    dir: PathBuf,
    /// operator, auditor, orchestrator or node (see README: Roles).
    #[arg(long, value_name = "ROLE")]
    role: String,
    /// For --role node: the node id the certificate may act as.
    #[arg(long, value_name = "ID")]
    node: Option<String>,
    /// The holder: the certificate's common name, recorded with admin actions.
    #[arg(long, value_name = "NAME")]
    name: String,
    /// Output prefix: writes PREFIX.pem and PREFIX.key [default: <DIR>/<NAME>]
    #[arg(long, value_name = "PREFIX")]
    out: Option<PathBuf>,
    /// Validity in days.
    #[arg(long, default_value_t = 365, value_name = "DAYS")]
    days: u32,
}

pub fn client_cert(a: ClientCertArgs) -> anyhow::Result<()> {
    let uri = assay_verifier::roles::san_uri(&a.role, a.node.as_deref()).map_err(Exit::Usage)?;
    let out = a.out.unwrap_or_else(|| a.dir.join(&a.name));
    assay_verifier::tls::client_cert(&a.dir, &a.name, &uri, a.days, &out)?;
    outln!(
        "wrote {0}.pem and {0}.key ({uri}, valid {1}): use them as --cert/--key (ASSAY_CLIENT_CERT/ASSAY_CLIENT_KEY)",
        out.display(),
        super::output::count(u64::from(a.days), "day")
    );
    Ok(())
}

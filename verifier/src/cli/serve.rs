//! `serve`: the verifier itself.

use std::path::PathBuf;

use assay_verifier::config::{Config, Overrides};
use clap::Args;

#[derive(Args)]
pub struct ServeArgs {
    /// TOML config file (keys and sections: see README, "Configuration");
    /// flags and ASSAY_* variables override it.
    #[arg(long, env = "ASSAY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
}

pub async fn run(a: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(a.config.as_deref(), a.overrides)?;
    let verifier = assay_verifier::server::build(config)?;
    assay_verifier::server::serve(verifier).await
}

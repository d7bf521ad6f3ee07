//! `node remove`: enrolled nodes, in the store directly.

use clap::Subcommand;

use super::local::StoreArgs;
use super::output::outln;

#[derive(Subcommand)]
pub enum NodeCmd {
    /// Forget a node (e.g. after a TPM replacement) so it can enroll again.
    Remove {
        /// The node id.
        node: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub fn run(c: NodeCmd) -> anyhow::Result<()> {
    match c {
        NodeCmd::Remove { node, store } => {
            if store.open()?.remove_node(&node)? {
                outln!("node {node} removed; it may enroll again");
                Ok(())
            } else {
                anyhow::bail!("node {node} is not enrolled in {}", store.describe())
            }
        }
    }
}

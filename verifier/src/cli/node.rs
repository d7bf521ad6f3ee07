//! `node remove | move`: enrolled nodes, in the store directly (the verifier
//! stopped, or PostgreSQL).

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
    /// Rename an enrolled node: its EK, AK and rollback baseline move to the
    /// new id (one EK holds one node id, so this is how a TPM changes name).
    /// Then run `assay-attestor join --node-id NEW --rename` on the node.
    Move {
        /// The node's current id.
        from: String,
        /// The new id; it must not be enrolled.
        to: String,
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
        NodeCmd::Move { from, to, store } => {
            assay_verifier::service::validate_node_id(&to).map_err(|e| anyhow::anyhow!("{e}"))?;
            let s = store.open()?;
            let Some(mut node) = s.node(&from)? else {
                anyhow::bail!("node {from} is not enrolled in {}", store.describe())
            };
            if s.node(&to)?.is_some() {
                anyhow::bail!(
                    "node {to} is already enrolled in {}; remove it first",
                    store.describe()
                )
            }
            node.node_id = to.clone();
            // The new record first: the EK index then names the new id, and
            // removing the old record leaves it alone.
            s.put_node(&node)?;
            s.remove_node(&from)?;
            outln!(
                "node {from} is now {to} (same EK, AK and rollback baseline); on the node run \
                 `assay-attestor join --node-id {to} --rename`"
            );
            Ok(())
        }
    }
}

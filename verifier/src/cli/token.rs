//! `token verify | jwks | list | revoke` (also spelled `tokens`).

use std::path::PathBuf;

use anyhow::Context as _;
use assay_proto::v1 as pb;
use clap::Subcommand;

use super::output::outln;
use super::remote::{answer, connect, ServerArgs};

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Check a join token presented by a node, and consume it (tokens are
    /// single use). Exit 0 valid, 3 refused, 4 verifier unreachable.
    Verify {
        #[command(flatten)]
        server: ServerArgs,
        /// The token the node presented.
        #[arg(long, value_name = "TOKEN")]
        token: String,
        /// The node presenting the token.
        #[arg(long, value_name = "ID")]
        node: String,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Web Key Set that verifies join tokens and checkpoints.
    Jwks {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List issued tokens by id (the SHA-256 of the token; tokens themselves are
    /// never stored): unused ones unless --all.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Only this node's tokens [default: every node's]
        #[arg(long, value_name = "ID")]
        node: Option<String>,
        /// Also used, revoked and expired tokens.
        #[arg(long)]
        all: bool,
        /// Most tokens to list.
        #[arg(long, default_value_t = 100, value_name = "N")]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke one unused token (--id, or --token-file holding the token), or
    /// every unused token of a node and its orchestrator grants (--node).
    #[command(group(clap::ArgGroup::new("which").required(true).args(["id", "token_file", "node"])))]
    Revoke {
        #[command(flatten)]
        server: ServerArgs,
        /// The token's id, or a prefix of at least 8 hex digits (`token list`).
        #[arg(long, value_name = "HEX")]
        id: Option<String>,
        /// A file holding the token (`-`: stdin); only its SHA-256 is sent.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// Every unused token of this node, and its orchestrator grants.
        #[arg(long, value_name = "ID")]
        node: Option<String>,
    },
}

pub async fn run(c: TokenCmd) -> anyhow::Result<()> {
    match c {
        TokenCmd::Verify {
            server,
            token,
            node,
            json,
        } => verify(&server, token, node, json).await,
        TokenCmd::Jwks { server } => {
            let r = pb::tokens_client::TokensClient::new(connect(&server).await?)
                .jwks(pb::JwksRequest {})
                .await
                .map_err(|s| answer("jwks", s))?;
            outln!("{}", r.into_inner().jwks_json);
            Ok(())
        }
        TokenCmd::List {
            server,
            node,
            all,
            limit,
            json,
        } => list(&server, node, all, limit, json).await,
        TokenCmd::Revoke {
            server,
            id,
            token_file,
            node,
        } => revoke(&server, id, token_file, node).await,
    }
}

async fn verify(
    server: &ServerArgs,
    token: String,
    node: String,
    json: bool,
) -> anyhow::Result<()> {
    let ch = connect(server).await?;
    let answered = pb::tokens_client::TokensClient::new(ch)
        .redeem(pb::RedeemRequest {
            token,
            node_id: node,
        })
        .await;
    match answered {
        Ok(r) => {
            let r = r.into_inner();
            if json {
                outln!(
                    "{}",
                    serde_json::json!({"valid": true, "node_id": r.node_id, "ak_name": r.ak_name, "expires_unix": r.expires_unix})
                );
            } else {
                outln!(
                    "valid: token issued to node {} (AK {}), expires at {}; now consumed",
                    r.node_id,
                    r.ak_name,
                    super::output::date(r.expires_unix)
                );
            }
            Ok(())
        }
        Err(s) => {
            if json {
                outln!(
                    "{}",
                    serde_json::json!({"valid": false, "reason": s.message()})
                );
            }
            Err(answer("token", s))
        }
    }
}

async fn list(
    server: &ServerArgs,
    node: Option<String>,
    all: bool,
    limit: u32,
    json: bool,
) -> anyhow::Result<()> {
    let toks = pb::tokens_client::TokensClient::new(connect(server).await?)
        .list(pb::ListTokensRequest {
            node_id: node.unwrap_or_default(),
            all,
            limit,
        })
        .await
        .map_err(|s| answer("token list", s))?
        .into_inner()
        .tokens;
    if json {
        let v: Vec<_> = toks
            .iter()
            .map(|t| {
                serde_json::json!({
                    "id": t.id, "node_id": t.node_id, "ak_name": t.ak_name,
                    "issued_unix": t.issued_unix, "expires_unix": t.expires_unix,
                    "state": t.state,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else if toks.is_empty() {
        outln!(
            "no tokens{}",
            if all {
                ""
            } else {
                " unused (--all shows every one)"
            }
        );
    } else {
        outln!(
            "{:<16}  {:<8}  {:<20}  {:<20}  NODE",
            "ID",
            "STATE",
            "ISSUED (UTC)",
            "EXPIRES (UTC)"
        );
        for t in &toks {
            outln!(
                "{:<16}  {:<8}  {:<20}  {:<20}  {}",
                t.id.get(..16).unwrap_or(&t.id),
                t.state,
                super::output::date(t.issued_unix),
                super::output::date(t.expires_unix),
                t.node_id
            );
        }
    }
    Ok(())
}

/// Most bytes read from a --token-file.
const MAX_TOKEN_FILE: u64 = 64 * 1024;

async fn revoke(
    server: &ServerArgs,
    id: Option<String>,
    token_file: Option<PathBuf>,
    node: Option<String>,
) -> anyhow::Result<()> {
    let id = match (id, token_file) {
        (Some(id), _) => id,
        (None, Some(f)) => {
            use std::io::Read as _;
            let mut text = String::new();
            let r: Box<dyn std::io::Read> = if f.as_os_str() == "-" {
                Box::new(std::io::stdin())
            } else {
                Box::new(
                    std::fs::File::open(&f)
                        .with_context(|| format!("--token-file {}", f.display()))?,
                )
            };
            r.take(MAX_TOKEN_FILE)
                .read_to_string(&mut text)
                .with_context(|| format!("reading the token from {}", f.display()))?;
            assay_verifier::store::token_id(text.trim())
        }
        (None, None) => String::new(),
    };
    let r = pb::tokens_client::TokensClient::new(connect(server).await?)
        .revoke(pb::RevokeTokensRequest {
            id,
            node_id: node.unwrap_or_default(),
        })
        .await
        .map_err(|s| answer("token revoke", s))?
        .into_inner();
    outln!("{} token(s) revoked", r.revoked);
    for a in r.actions {
        outln!("{a}");
    }
    Ok(())
}

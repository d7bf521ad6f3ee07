//! The fleet page (`[web]`): a read-only view of the fleet for auditors and
//! operators, served by the verifier over HTTPS on its own listener.
//!
//! What it shows: the fleet's standing now or at a chosen moment (counts,
//! and each node failing first with its failed claims, expected and
//! actual), each node's timeline of verdicts under the policy version behind
//! each, its tokens (revoked ones too) and quarantine, the operator actions
//! (revocations, node and policy changes) and the history chain's state
//! (head, last signed checkpoint, whether its signature and head hash hold).
//! Times are dates in UTC.
//!
//! What it is not: no change of any kind (GET and HEAD only), no script, no
//! asset from anywhere else (one stylesheet of its own), and not a full
//! chain audit (that is `assay-verifier audit verify`).
//!
//! Roles come from client certificates as for the API (`roles`): auditor and
//! operator (the roles that may read the history) see the page; no
//! certificate, or any other role, gets a 403 page that says what it takes.
//! With `tls.no_client_auth` the page is open, as every RPC is then.
//!
//! - `config.rs`: `[web]` and its bounds
//! - `serve.rs`: TLS, the listener, routes, the role check, headers
//! - `query.rs`: the query strings
//! - `load.rs`: the store reads behind each page (blocking)
//! - `view.rs`: what a page shows, as data; the fleet's counting and paging
//! - `render.rs`, `html.rs`, `style.css`: the HTML (pure) and its escaping
//! - `dates.rs`: times as dates in UTC, and back

mod config;
pub mod dates;
mod html;
mod load;
pub mod query;
pub mod render;
mod serve;
pub mod view;

pub use self::config::{
    FileWeb, WebConfig, DEFAULT_NODES_PER_PAGE, DEFAULT_RECORDS_PER_PAGE, MAX_NODES_PER_PAGE,
    MAX_RECORDS_PER_PAGE,
};
pub use self::dates::{parse_utc, utc};
pub use self::load::{
    chain_state, fleet_page, node_page, FleetQuery, NodeQuery, OPERATOR_ACTION_WINDOW,
};
pub use self::serve::{bind, serve, WebListener, CSP};
pub use self::view::{fleet_rows, FleetPage, NodePage, Standing, Viewer};

//! The pages as HTML: pure functions, a view in and a document out. No
//! script, no asset from elsewhere; one stylesheet served by the page itself
//! (`/style.css`). Every string from the store or the request is escaped
//! (`html::Html`). The fleet page is `fleet.rs`, a node's page `node.rs`;
//! what both show (records, claims, policies, the page's frame) is here.

mod fleet;
mod node;
#[cfg(test)]
mod tests;

pub use self::fleet::{fleet, FLEET_NOTE_CHARS, FLEET_VALUE_CHARS};
pub use self::node::node;

use assay_core::verdict::Claim;

use super::dates;
use super::html::{prefix, url, Html};
use super::view::{Standing, Viewer};
use crate::store::HistoryRecord;

/// Characters of a claim's value on a node's page.
pub const NODE_VALUE_CHARS: usize = 600;

fn head(h: &mut Html, title: &str, viewer: Option<&Viewer>) {
    h.raw(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>",
    )
    .text(title)
    .raw(
        "</title><link rel=\"stylesheet\" href=\"/style.css\"></head><body>\
         <header><a class=\"brand\" href=\"/\">Assay · fleet</a>",
    );
    if let Some(v) = viewer {
        h.raw("<span class=\"who\">");
        if v.open {
            h.raw("<span class=\"warn\">open to any TLS client (tls.no_client_auth)</span>");
        } else {
            h.text(&v.role).raw(" · ").text(&v.subject);
        }
        h.raw("</span>");
    }
    h.raw("</header><main>");
}

fn foot(h: &mut Html, generated_unix: i64) {
    h.raw("</main><footer>Read-only. Times are UTC. Page built ")
        .date(generated_unix)
        .raw(".</footer></body></html>\n");
}

fn badge(h: &mut Html, s: Standing) {
    h.raw("<span class=\"badge ")
        .raw(s.as_str())
        .raw("\">")
        .raw(s.as_str())
        .raw("</span>");
}

/// `NAME@VERSION` (or `@DIGEST8` for records before versions), the full
/// digest as its title.
fn policy(h: &mut Html, r: &HistoryRecord) {
    h.raw("<span class=\"policy\" title=\"sha256 ")
        .attr(&r.policy_digest)
        .raw("\">")
        .text(&r.policy_name)
        .raw("@");
    if r.policy_version > 0 {
        h.num(r.policy_version);
    } else {
        h.text(r.policy_digest.get(..8).unwrap_or(&r.policy_digest));
    }
    h.raw("</span>");
}

/// What a record is, in one word (as `history` prints it).
pub fn record_label(r: &HistoryRecord) -> &'static str {
    crate::service::record_label(&r.kind, r.passed)
}

fn all_passed(h: &mut Html, n: usize) {
    h.raw("<span class=\"quiet\">all claims passed (")
        .num(n)
        .raw(")</span>");
}

/// A value cut to `max` characters, all of it (up to [`NODE_VALUE_CHARS`])
/// in its title when cut.
fn value(h: &mut Html, v: &str, max: usize) {
    if v.chars().nth(max).is_some() {
        h.raw("<code title=\"")
            .attr(prefix(v, NODE_VALUE_CHARS))
            .raw("\">")
            .clipped(v, max)
            .raw("</code>");
    } else {
        h.raw("<code>").text(v).raw("</code>");
    }
}

fn node_link(h: &mut Html, node_id: &str, at: Option<i64>) {
    let at = at.map(dates::field).unwrap_or_default();
    h.link_open(&url("/node", &[("id", node_id), ("at", &at)]))
        .text(node_id)
        .raw("</a>");
}

fn at_form(h: &mut Html, action: &str, label: &str, at: Option<i64>, keep: &[(&str, &str)]) {
    h.raw("<form class=\"when\" method=\"get\" action=\"")
        .attr(action)
        .raw("\">");
    for (k, v) in keep.iter().filter(|(_, v)| !v.is_empty()) {
        h.raw("<input type=\"hidden\" name=\"")
            .attr(k)
            .raw("\" value=\"")
            .attr(v)
            .raw("\">");
    }
    h.raw("<label>")
        .text(label)
        .raw(" <input name=\"at\" size=\"20\" maxlength=\"40\" placeholder=\"YYYY-MM-DD HH:MM:SS\" value=\"");
    if let Some(t) = at {
        h.attr(&dates::field(t));
    }
    h.raw("\"> UTC</label> <button type=\"submit\">Show</button> ");
    h.link_open(&url(action, keep)).raw("now</a></form>");
}

/// Records as a table, newest first; `with_node` adds the node column.
fn records_table(h: &mut Html, recs: &[HistoryRecord], with_node: bool) {
    if recs.is_empty() {
        h.raw("<p class=\"quiet\">None.</p>");
        return;
    }
    h.raw("<table class=\"timeline\"><thead><tr><th>seq</th><th>time (UTC)</th>");
    if with_node {
        h.raw("<th>node</th>");
    }
    h.raw("<th>record</th><th>policy</th><th>claims</th></tr></thead><tbody>\n");
    for r in recs {
        let label = record_label(r);
        h.raw("<tr class=\"")
            .raw(&label.to_ascii_lowercase())
            .raw("\"><td class=\"seq\">")
            .num(r.seq)
            .raw("</td><td class=\"time\">")
            .date(r.time_unix)
            .raw("</td>");
        if with_node {
            h.raw("<td class=\"node\">");
            if !r.node_id.is_empty() {
                node_link(h, &r.node_id, None);
            }
            h.raw("</td>");
        }
        h.raw("<td><span class=\"label ")
            .raw(&label.to_ascii_lowercase())
            .raw("\">")
            .raw(label)
            .raw("</span></td><td>");
        policy(h, r);
        h.raw("</td><td>");
        record_claims(h, r);
        h.raw("</td></tr>\n");
    }
    h.raw("</tbody></table>");
}

/// A record's claims in full: a verdict's failed claims with expected,
/// actual and where; any other record's claims (what happened, by whom).
fn record_claims(h: &mut Html, r: &HistoryRecord) {
    let verdict = r.kind.is_empty();
    let shown: Vec<&Claim> = r.claims.iter().filter(|c| !verdict || !c.passed).collect();
    if shown.is_empty() {
        all_passed(h, r.claims.len());
        return;
    }
    h.raw("<table class=\"claims\"><tr><th>claim</th><th>expected</th><th>actual</th><th>where</th></tr>");
    for c in shown {
        h.raw("<tr><td><code class=\"claim\">")
            .text(&c.id)
            .raw("</code></td><td><code>")
            .clipped(&c.expected, NODE_VALUE_CHARS)
            .raw("</code></td><td><code>")
            .clipped(&c.actual, NODE_VALUE_CHARS)
            .raw("</code></td><td>")
            .clipped(&c.location, NODE_VALUE_CHARS)
            .raw("</td></tr>");
    }
    h.raw("</table>");
}

/// A page that only says why (a refusal, an unknown path, a bad request).
pub fn message(title: &str, text: &str, hint: Option<&str>, generated_unix: i64) -> String {
    let mut h = Html::with_capacity(1024);
    head(&mut h, title, None);
    h.raw("<h1>")
        .text(title)
        .raw("</h1><p>")
        .text(text)
        .raw("</p>");
    if let Some(hint) = hint {
        h.raw("<p class=\"hint\">").text(hint).raw("</p>");
    }
    foot(&mut h, generated_unix);
    h.finish()
}

/// The stylesheet (`/style.css`).
pub const STYLE: &str = include_str!("../style.css");

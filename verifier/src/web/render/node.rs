//! A node's page: its standing, enrollment, quarantine, tokens and timeline.

use super::{at_form, badge, foot, head, policy, records_table};
use crate::web::dates;
use crate::web::html::{url, Html};
use crate::web::view::NodePage;

/// A node's page: its standing, quarantine, tokens and timeline.
pub fn node(p: &NodePage) -> String {
    let mut h = Html::with_capacity(8192 + p.timeline.len() * 600);
    head(
        &mut h,
        &format!("{} · Assay fleet", p.node_id),
        Some(&p.viewer),
    );
    h.raw("<h1>Node <span class=\"node\">")
        .text(&p.node_id)
        .raw("</span> ");
    badge(&mut h, p.standing);
    h.raw("</h1><dl class=\"facts\"><dt>standing");
    if let Some(t) = p.to_unix {
        h.raw(" at ").date(t);
    }
    h.raw("</dt><dd>");
    match &p.latest {
        Some(r) => {
            badge(&mut h, p.standing);
            h.raw(" since record #")
                .num(r.seq)
                .raw(" at ")
                .date(r.time_unix)
                .raw(" under ");
            policy(&mut h, r);
        }
        None => {
            h.raw("no verdict yet");
        }
    }
    h.raw("</dd><dt>enrolled (now)</dt><dd>");
    match p.enrolled {
        Some((at, last_pass)) => {
            h.raw("at ").date(at).raw("; last pass ");
            match last_pass {
                Some(t) => h.date(t),
                None => h.raw("never"),
            };
        }
        None => {
            h.raw("not enrolled (removed, or never completed)");
        }
    }
    h.raw("</dd><dt>quarantine (now)</dt><dd>");
    match &p.quarantine {
        Some(q) => {
            h.raw("<span class=\"bad\">quarantined</span> since ")
                .date(q.since_unix)
                .raw(if q.applied {
                    ", isolated by the orchestrator"
                } else {
                    ", <span class=\"warn\">isolation pending</span>"
                });
        }
        None => {
            h.raw("not quarantined");
        }
    }
    h.raw("</dd></dl>");

    h.raw("<section><h2>Join tokens <span class=\"quiet\">(newest first; a failure revokes the unused ones)</span></h2>");
    if p.tokens.is_empty() {
        h.raw("<p class=\"quiet\">None kept.</p>");
    } else {
        h.raw("<table><thead><tr><th>id</th><th>issued (UTC)</th><th>expires (UTC)</th><th>state</th></tr></thead><tbody>");
        for (id, t) in &p.tokens {
            let state = t.state(p.generated_unix);
            h.raw("<tr><td><code title=\"")
                .attr(id)
                .raw("\">")
                .text(id.get(..16).unwrap_or(id))
                .raw("</code></td><td class=\"time\">");
            if t.issued_unix > 0 {
                h.date(t.issued_unix);
            }
            h.raw("</td><td class=\"time\">")
                .date(t.expires_unix)
                .raw("</td><td><span class=\"token ")
                .raw(state)
                .raw("\">")
                .raw(state)
                .raw("</span></td></tr>");
        }
        h.raw("</tbody></table>");
    }
    h.raw("</section>");

    h.raw("<section><h2>Timeline <span class=\"quiet\">(newest first)</span></h2>");
    at_form(&mut h, "/node", "Up to", p.to_unix, &[("id", &p.node_id)]);
    let at = p.to_unix.map(dates::field).unwrap_or_default();
    records_table(&mut h, &p.timeline, false);
    h.raw("<nav class=\"pager\">");
    if p.before_seq.is_some() {
        h.link_open(&url("/node", &[("id", &p.node_id), ("at", &at)]))
            .raw("« newest</a> ");
    }
    if p.next_before_seq != 0 {
        let next = p.next_before_seq.to_string();
        h.link_open(&url(
            "/node",
            &[("id", &p.node_id), ("at", &at), ("before", &next)],
        ))
        .raw("older ›</a>");
    }
    h.raw("</nav></section>");
    foot(&mut h, p.generated_unix);
    h.finish()
}

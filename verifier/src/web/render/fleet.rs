//! The fleet page: standing now or at a moment (counts and each node),
//! quarantines, operator actions and the history chain.

use assay_core::verdict::Claim;

use super::{all_passed, at_form, badge, foot, head, node_link, policy, records_table, value};
use crate::store::HistoryRecord;
use crate::web::dates;
use crate::web::html::{url, Html};
use crate::web::view::{ChainState, Counts, FleetPage, NodeRow, Paging, Standing};

/// Characters of a claim's expected or actual value shown in the fleet table
/// (the node's page shows [`super::NODE_VALUE_CHARS`]).
pub const FLEET_VALUE_CHARS: usize = 16;
/// Characters of what a record that is not a verdict says, in the fleet table.
pub const FLEET_NOTE_CHARS: usize = 80;
/// Failed claims listed per node in the fleet table.
const FLEET_CLAIMS: usize = 4;

fn failed_claim_line(h: &mut Html, c: &Claim, max: usize) {
    h.raw("<li><code class=\"claim\">")
        .text(&c.id)
        .raw("</code> expected ");
    value(h, &c.expected, max);
    h.raw(" got ");
    value(h, &c.actual, max);
    h.raw("</li>");
}

/// A record's claims for the fleet table: the failed ones of a verdict, or
/// what happened for any other record.
fn record_summary(h: &mut Html, r: &HistoryRecord) {
    if r.kind.is_empty() {
        let failed: Vec<&Claim> = r.claims.iter().filter(|c| !c.passed).collect();
        if failed.is_empty() {
            all_passed(h, r.claims.len());
            return;
        }
        h.raw("<ul class=\"claims\">");
        for c in failed.iter().take(FLEET_CLAIMS) {
            failed_claim_line(h, c, FLEET_VALUE_CHARS);
        }
        if failed.len() > FLEET_CLAIMS {
            h.raw("<li class=\"quiet\">and ")
                .num(failed.len() - FLEET_CLAIMS)
                .raw(" more</li>");
        }
        h.raw("</ul>");
    } else {
        for c in &r.claims {
            h.raw("<code class=\"claim\">")
                .text(&c.id)
                .raw("</code> ")
                .clipped(&c.actual, FLEET_NOTE_CHARS)
                .raw(" ");
        }
    }
}

fn counts(h: &mut Html, c: &Counts, at: &str) {
    h.raw("<section class=\"counts\">");
    for s in Standing::ALL {
        h.link_open(&url("/", &[("state", s.as_str()), ("at", at)]))
            .raw("<span class=\"tile ")
            .raw(s.as_str())
            .raw("\"><span class=\"n\">")
            .num(c.of(s))
            .raw("</span> ")
            .raw(s.as_str())
            .raw("</span></a>");
    }
    h.raw("<span class=\"tile quarantined\"><span class=\"n\">")
        .num(c.quarantined)
        .raw("</span> quarantined now</span>");
    h.link_open(&url("/", &[("at", at)]))
        .raw("<span class=\"tile all\"><span class=\"n\">")
        .num(c.nodes())
        .raw("</span> nodes</span></a></section>");
}

fn chain(h: &mut Html, c: &ChainState) {
    h.raw("<section class=\"chain\"><h2>History chain <span class=\"quiet\">(now)</span></h2><p>");
    let Some((head_seq, head_time)) = c.head else {
        h.raw("No records yet.</p></section>");
        return;
    };
    h.raw("Head: record #")
        .num(head_seq)
        .raw(" at ")
        .date(head_time)
        .raw(". ");
    match &c.checkpoint {
        None => {
            h.raw("<span class=\"warn\">No signed checkpoint yet</span>: the records are chained, not yet signed.");
        }
        Some(cp) => {
            h.raw("Last signed checkpoint: #")
                .num(cp.seq)
                .raw(" at ")
                .date(cp.time_unix)
                .raw(" — ");
            match &cp.signature {
                Ok(()) => h.raw("<span class=\"ok\">signature verifies</span>"),
                Err(e) => h
                    .raw("<span class=\"bad\">signature does not verify: ")
                    .text(e)
                    .raw("</span>"),
            };
            match cp.matches_record {
                Some(true) => h.raw(", <span class=\"ok\">matches the stored record</span>"),
                Some(false) => h.raw(
                    ", <span class=\"bad\">the stored record no longer hashes to the signed head</span>",
                ),
                None => h.raw(", <span class=\"bad\">the signed record is missing</span>"),
            };
            h.raw(". ");
            let after = head_seq.saturating_sub(cp.seq);
            if after == 0 {
                h.raw("Every record is covered.");
            } else {
                h.num(after)
                    .raw(if after == 1 { " record" } else { " records" })
                    .raw(" after it: chained, signed at the next checkpoint.");
            }
        }
    }
    h.raw(
        "</p><p class=\"quiet\">The whole chain is re-checked offline with \
           <code>assay-verifier audit verify</code>.</p></section>",
    );
}

fn pager(h: &mut Html, p: &Paging, params: &[(&str, &str)]) {
    if p.pages <= 1 {
        return;
    }
    let link = |h: &mut Html, n: usize, label: &str| {
        let n = n.to_string();
        let mut all: Vec<(&str, &str)> = params.to_vec();
        all.push(("page", &n));
        h.link_open(&url("/", &all)).raw(label).raw("</a> ");
    };
    h.raw("<nav class=\"pager\">");
    if p.number > 1 {
        link(h, 1, "« first");
        link(h, p.number - 1, "‹ previous");
    }
    h.raw("page ")
        .num(p.number)
        .raw(" of ")
        .num(p.pages)
        .raw(" ");
    if p.number < p.pages {
        link(h, p.number + 1, "next ›");
        link(h, p.pages, "last »");
    }
    h.raw("</nav>");
}

fn node_row(h: &mut Html, r: &NodeRow, at: Option<i64>) {
    h.raw("<tr class=\"")
        .raw(r.standing.as_str())
        .raw("\"><td class=\"node\">");
    node_link(h, &r.node_id, at);
    h.raw("</td><td>");
    badge(h, r.standing);
    h.raw("</td>");
    match &r.latest {
        Some(rec) => {
            h.raw("<td class=\"time\">")
                .date(rec.time_unix)
                .raw("</td><td>");
            policy(h, rec);
            h.raw("</td><td>");
            record_summary(h, rec);
            h.raw("</td>");
        }
        None => {
            h.raw("<td>—</td><td>—</td><td class=\"quiet\">no verdict yet</td>");
        }
    }
    h.raw("<td>");
    if let Some(q) = &r.quarantine {
        h.raw("<span class=\"time\">since ")
            .date(q.since_unix)
            .raw("</span>");
        if !q.applied {
            h.raw(" <span class=\"warn\">(isolation pending)</span>");
        }
    }
    h.raw("</td></tr>\n");
}

/// The fleet page: standing now or at a moment (counts and each node),
/// quarantines, operator actions and the history chain.
pub fn fleet(p: &FleetPage) -> String {
    let mut h = Html::with_capacity(4096 + p.rows.len() * 480);
    head(&mut h, "Assay fleet", Some(&p.viewer));
    let at = p.at_unix.map(dates::field).unwrap_or_default();
    let state = p.filter.map(Standing::as_str).unwrap_or_default();
    h.raw("<h1>Fleet standing ");
    match p.at_unix {
        Some(t) => h.raw("at ").date(t),
        None => h.raw("now (").date(p.generated_unix).raw(")"),
    };
    h.raw("</h1>");
    at_form(&mut h, "/", "Standing at", p.at_unix, &[("state", state)]);
    counts(&mut h, &p.counts, &at);
    chain(&mut h, &p.chain);

    h.raw("<section><h2>");
    match p.filter {
        Some(s) => h.raw("Nodes standing ").raw(s.as_str()),
        None => h.raw("Nodes"),
    };
    h.raw(" <span class=\"quiet\">(").num(p.paging.matching);
    if p.filter.is_none() {
        h.raw(", failing first");
    }
    h.raw(")</span></h2>");
    let params = [("state", state), ("at", at.as_str())];
    pager(&mut h, &p.paging, &params);
    if p.rows.is_empty() {
        match p.filter {
            Some(s) => h.raw("<p class=\"quiet\">No node stands ").raw(s.as_str()),
            None => h.raw("<p class=\"quiet\">No node has a record"),
        };
        if p.at_unix.is_some() {
            h.raw(" at that time");
        }
        h.raw(".</p>");
    } else {
        h.raw(
            "<table class=\"fleet\"><thead><tr><th>node</th><th>standing</th><th>last verdict (UTC)</th>\
             <th>policy</th><th>failed claims: expected / actual</th><th>quarantined (now)</th>\
             </tr></thead><tbody>\n",
        );
        for r in &p.rows {
            node_row(&mut h, r, p.at_unix);
        }
        h.raw("</tbody></table>");
    }
    pager(&mut h, &p.paging, &params);
    h.raw("</section>");

    h.raw("<section><h2>Quarantined nodes <span class=\"quiet\">(now)</span></h2>");
    if p.quarantines.is_empty() {
        h.raw("<p class=\"quiet\">None.</p>");
    } else {
        h.raw("<table><thead><tr><th>node</th><th>since (UTC)</th><th>orchestrator</th></tr></thead><tbody>");
        for (node, q) in &p.quarantines {
            h.raw("<tr><td>");
            node_link(&mut h, node, None);
            h.raw("</td><td class=\"time\">")
                .date(q.since_unix)
                .raw("</td><td>")
                .raw(if q.applied {
                    "isolated"
                } else {
                    "<span class=\"warn\">isolation pending</span>"
                })
                .raw("</td></tr>");
        }
        h.raw("</tbody></table>");
        if p.counts.quarantined > p.quarantines.len() {
            h.raw("<p class=\"quiet\">The newest ")
                .num(p.quarantines.len())
                .raw(" of ")
                .num(p.counts.quarantined)
                .raw(".</p>");
        }
    }
    h.raw("</section>");

    h.raw("<section><h2>Operator actions <span class=\"quiet\">(revocations, node and policy changes; newest first)</span></h2>");
    records_table(&mut h, &p.operator_actions, true);
    h.raw("</section>");
    foot(&mut h, p.generated_unix);
    h.finish()
}

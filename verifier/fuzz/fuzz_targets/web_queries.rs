//! The fleet page's request parsing: the query strings of `/` and `/node`
//! and the times people type (`at=`). Input: the query string's bytes.
//!
//! Checked besides "no panic, no hang, bounded memory": a time that parses
//! reads back to itself from the date the page shows for it (the `at`
//! field), and a node query that parses names a valid node id.
#![no_main]

use assay_verifier::web::{dates, query};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = query::fleet(Some(text));
    if let Ok(q) = query::node(Some(text)) {
        assert!(assay_verifier::service::validate_node_id(&q.node_id).is_ok());
    }
    if let Ok(t) = dates::parse_utc(text) {
        let shown = dates::field(t);
        if !shown.starts_with("unix ") {
            assert_eq!(dates::parse_utc(&shown), Ok(t), "{text:?} → {shown}");
        }
    }
});

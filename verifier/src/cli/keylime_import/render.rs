//! The Assay policy file: its layout, and TOML strings written byte for
//! byte — a basic string (`"…"`, TOML 1.0: quotation mark, backslash and
//! control characters other than tab escaped; tab escaped too), or a literal
//! string (`'…'`) where none is needed, which keeps regular expressions
//! readable.

use std::fmt::Write as _;

use super::{Exclude, Rows};

/// The policy file's top-level facts.
pub(super) struct Header<'a> {
    pub name: &'a str,
    pub source: &'a str,
    pub meta_version: u64,
    pub generator: u64,
    pub timestamp: Option<&'a str>,
    pub release: u64,
}

/// The policy file: `[ima]` with the allowlist, then buffers and keys if any.
pub(super) fn policy(
    h: &Header,
    boot_aggregate: Option<bool>,
    excludes: &[Exclude],
    allowlist: &Rows,
    buffers: &Rows,
    keys: &[String],
    size_hint: usize,
) -> String {
    let mut t = String::with_capacity(size_hint + size_hint / 4 + 1024);
    t.push_str(&format!(
        "# Imported from the Keylime runtime policy {} by `assay-verifier policy import-keylime`.\n\
         # Review the warnings it printed; policies/README.md says what each key means.\n",
        for_comment(h.source)
    ));
    t.push_str("schema = 1\nname = ");
    basic(&mut t, h.name);
    t.push_str("\ndescription = ");
    let mut description = format!(
        "Imported from Keylime runtime policy {} (meta version {}, generator {}",
        h.source, h.meta_version, h.generator
    );
    if let Some(ts) = h.timestamp {
        description.push_str(&format!(", timestamp {ts}"));
    }
    description.push_str(&format!(", release {})", h.release));
    basic(&mut t, &description);
    t.push('\n');
    if h.release > 0 {
        t.push_str(&format!("version = \"{}\"\n", h.release));
    }
    t.push_str("\n[ima]\npcr = 10\n");
    if let Some(b) = boot_aggregate {
        t.push_str(&format!("boot_aggregate = {b}\n"));
    }
    if !excludes.is_empty() {
        t.push_str("excludes = [\n");
        for (i, e) in excludes.iter().enumerate() {
            t.push_str(&format!(
                "    # Keylime excludes[{i}]: {}\n    ",
                for_comment(&e.keylime)
            ));
            literal_or_basic(&mut t, &e.assay);
            t.push_str(",\n");
        }
        t.push_str("]\n");
    }
    t.push_str("\n[ima.allowlist]\n");
    table_of_lists(&mut t, allowlist);
    if !buffers.is_empty() {
        t.push_str("\n[ima.buffers]\n");
        table_of_lists(&mut t, buffers);
    }
    if !keys.is_empty() {
        t.push_str("\n[ima.keyrings.keylime]\n# Keylime's verification-keys\nkeys = [\n");
        for k in keys {
            t.push_str("    ");
            basic(&mut t, k);
            t.push_str(",\n");
        }
        t.push_str("]\n");
    }
    t
}

/// `"name" = ["alg:hex", …]` lines.
fn table_of_lists(t: &mut String, rows: &Rows) {
    for (name, list) in rows {
        basic(t, name);
        t.push_str(" = [");
        for (i, d) in list.iter().enumerate() {
            if i > 0 {
                t.push_str(", ");
            }
            t.push('"');
            t.push_str(d.alg);
            t.push(':');
            t.push_str(&d.hex);
            t.push('"');
        }
        t.push_str("]\n");
    }
}

/// Appends `s` as a TOML basic string.
fn basic(out: &mut String, s: &str) {
    out.push('"');
    if !s.chars().any(needs_escape) {
        out.push_str(s);
    } else {
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if c.is_control() && (c as u32) < 0x80 => {
                    let _ = write!(out, "\\u{:04X}", c as u32);
                }
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

/// Appends `s` as a literal string if it can be one, else as a basic string.
fn literal_or_basic(out: &mut String, s: &str) {
    if s.chars()
        .any(|c| c == '\'' || needs_escape(c) && c != '"' && c != '\\')
    {
        basic(out, s);
    } else {
        out.push('\'');
        out.push_str(s);
        out.push('\'');
    }
}

/// `s` as it may stand in a `#` comment: in basic-string form, so a newline
/// or control character in it cannot end or break the comment.
fn for_comment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    basic(&mut out, s);
    out
}

/// Characters a basic string must escape: `"`, `\` and the ASCII control
/// characters (tab included, for clarity). C1 controls (U+0080–U+009F) are
/// allowed by TOML as they are.
fn needs_escape(c: char) -> bool {
    c == '"' || c == '\\' || (c.is_control() && (c as u32) < 0x80)
}

//! The one way the page writes HTML: markup is pushed as written, every other
//! string through an escaper (html-escape) for where it goes, text or a
//! double-quoted attribute. Node ids, claim ids and values, policy names,
//! certificate subjects: everything that comes from the store or the
//! request goes through [`Html::text`] or [`Html::attr`].

use std::fmt::Write as _;

/// An HTML document being written.
#[derive(Debug, Default)]
pub struct Html(String);

impl Html {
    pub fn with_capacity(n: usize) -> Self {
        Html(String::with_capacity(n))
    }

    /// Markup, as written (only literals of this module's callers).
    pub fn raw(&mut self, markup: &str) -> &mut Self {
        self.0.push_str(markup);
        self
    }

    /// Text between tags, escaped.
    pub fn text(&mut self, s: &str) -> &mut Self {
        html_escape::encode_text_to_string(s, &mut self.0);
        self
    }

    /// Text, at most `max` characters of it (an ellipsis marks the cut).
    pub fn clipped(&mut self, s: &str, max: usize) -> &mut Self {
        let head = prefix(s, max);
        self.text(head);
        if head.len() < s.len() {
            self.raw("…");
        }
        self
    }

    /// The value of a double-quoted attribute, escaped.
    pub fn attr(&mut self, s: &str) -> &mut Self {
        html_escape::encode_double_quoted_attribute_to_string(s, &mut self.0);
        self
    }

    pub fn num(&mut self, n: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.0, "{n}");
        self
    }

    /// A time, as a date in UTC.
    pub fn date(&mut self, unix: i64) -> &mut Self {
        super::dates::write_utc(&mut self.0, unix);
        self
    }

    /// `<a href="URL">`, the URL escaped for the attribute.
    pub fn link_open(&mut self, url: &str) -> &mut Self {
        self.raw("<a href=\"").attr(url).raw("\">")
    }

    pub fn finish(self) -> String {
        self.0
    }
}

/// The first `max` characters of `s`.
pub fn prefix(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((cut, _)) => s.get(..cut).unwrap_or(s),
        None => s,
    }
}

/// `path?k=v&…` with the values form-encoded (empty values left out).
pub fn url(path: &str, params: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in params.iter().filter(|(_, v)| !v.is_empty()) {
        q.append_pair(k, v);
        any = true;
    }
    if any {
        format!("{path}?{}", q.finish())
    } else {
        path.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_strings_cannot_become_markup() {
        let mut h = Html::default();
        h.raw("<td title=\"")
            .attr("\" onmouseover=\"x")
            .raw("\">")
            .text("<script>alert(1)</script>&")
            .raw("</td>");
        assert_eq!(
            h.finish(),
            "<td title=\"&quot; onmouseover=&quot;x\">&lt;script&gt;alert(1)&lt;/script&gt;&amp;</td>"
        );
    }

    #[test]
    fn clipping_keeps_whole_characters() {
        let mut h = Html::default();
        h.clipped("ééé<", 2);
        assert_eq!(h.finish(), "éé…");
        let mut h = Html::default();
        h.clipped("ab<", 3);
        assert_eq!(h.finish(), "ab&lt;");
    }

    #[test]
    fn urls_encode_their_values() {
        assert_eq!(url("/", &[]), "/");
        assert_eq!(url("/", &[("at", ""), ("state", "fail")]), "/?state=fail");
        assert_eq!(
            url("/node", &[("id", "a&b=c d"), ("at", "2024-05-03 14:00:00")]),
            "/node?id=a%26b%3Dc+d&at=2024-05-03+14%3A00%3A00"
        );
    }
}

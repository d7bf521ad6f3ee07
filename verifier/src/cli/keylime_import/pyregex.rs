//! Keylime's exclude patterns, Python `re` syntax, as Assay excludes (Rust
//! `regex` syntax) with the same meaning.
//!
//! Keylime 7.14.3 joins its excludes into one Python regex, `(p1)|(p2)|…`
//! (`validators.valid_exclude_list`), and skips a path when `re.match` finds
//! it: anchored at the start only, so any path that *begins* with a match is
//! excluded. Assay anchors each pattern at both ends (`^(?:X)$`), so each
//! pattern `p` becomes `(?:T)(?s:.*)`, where `T` is `p` rewritten token by
//! token with Python's meaning:
//!
//! - groups become non-capturing (captures do not change what matches);
//!   scoped flags `(?i:…)`, `(?m:…)`, `(?s:…)` (and `-` forms) are kept;
//! - `\s` gains `\x1C-\x1F` (Python's `str.isspace`), `\w` is
//!   `[\p{L}\p{N}_]` (Python's `str.isalnum` or `_`), `\Z` is `\z`, octal and
//!   `\x`/`\u`/`\U` escapes become `\x{…}`, `{,n}` becomes `{0,n}`, a `{`
//!   that is no quantifier is a literal;
//! - every literal inside a class is written `\x{…}`, so the regex crate's
//!   class set operations (`&&`, `--`, `~~`, nested `[`) never apply;
//! - `$` without `m` (end, or before a final newline) must end its branch:
//!   it becomes `(?:\n?\z)`, which is the same there since anything may
//!   follow the match.
//!
//! Refused, with the reason: what Python refuses (Keylime would then ignore
//! the whole exclude list), and what the regex crate cannot do or would do
//! differently: lookaround, backreferences, conditionals, atomic groups and
//! possessive quantifiers, global inline flags (Python refuses them inside the
//! joined pattern), the `a`, `L`, `u`, `x` flags, `\N{…}`, lone surrogates, a
//! `$` followed by more pattern, a `\B` that would match the empty path
//! (Python's never matches in an empty string). `\b`/`\B` and `(?i)` are
//! kept; they agree with Python on ASCII and may differ next to a few
//! non-ASCII characters, which the caller warns about.

use std::fmt::Write as _;

/// Deepest group nesting accepted.
const MAX_DEPTH: usize = 100;

/// One Keylime exclude pattern in Assay's syntax.
#[derive(Debug)]
pub(super) struct Translated {
    /// The Assay `excludes` entry (anchored at both ends by the verifier).
    pub regex: String,
    /// Names of `(?P<name>…)` groups: Python refuses a name twice in the
    /// joined pattern, so the caller checks them across all excludes.
    pub group_names: Vec<String>,
    /// Uses `\b` or `\B`.
    pub word_boundary: bool,
    /// Uses `\B`.
    non_word_boundary: bool,
    /// Uses the `i` flag.
    pub case_insensitive: bool,
}

/// Rewrites one Keylime exclude pattern; the error says why it cannot be.
pub(super) fn translate(pattern: &str) -> Result<Translated, String> {
    let t = rewrite(pattern, false)?;
    if t.non_word_boundary {
        // Python's `\B` never matches in an empty string; the regex crate's
        // does. Refused only where that changes whether the empty path is
        // excluded.
        let never = rewrite(pattern, true)?;
        let matches_empty = |r: &str| {
            regex::RegexBuilder::new(&format!("^(?:{r})$"))
                .size_limit(1 << 20)
                .build()
                .map(|re| re.is_match(""))
        };
        if let (Ok(a), Ok(b)) = (matches_empty(&t.regex), matches_empty(&never.regex)) {
            if a != b {
                return Err(
                    "its \\B would match the empty path, where Python's \\B never \
                            matches: Keylime does not exclude an empty path, the regex crate \
                            would"
                        .into(),
                );
            }
        }
    }
    Ok(t)
}

/// One pass of the rewriting; `empty_b`: write `\B` as a class nothing is in.
fn rewrite(pattern: &str, empty_b: bool) -> Result<Translated, String> {
    let mut p = Parser {
        chars: pattern.chars().collect(),
        pos: 0,
        out: String::with_capacity(pattern.len() + 16),
        multiline: false,
        group_names: Vec::new(),
        word_boundary: false,
        non_word_boundary: false,
        empty_b,
        case_insensitive: false,
    };
    p.alternation(0)?;
    if p.pos < p.chars.len() {
        return Err(format!(
            "unbalanced parenthesis at position {}: Python refuses it (or, in Keylime's joined \
             pattern, reads it as more than one pattern)",
            p.pos
        ));
    }
    Ok(Translated {
        regex: format!("(?:{})(?s:.*)", p.out),
        group_names: p.group_names,
        word_boundary: p.word_boundary,
        non_word_boundary: p.non_word_boundary,
        case_insensitive: p.case_insensitive,
    })
}

/// What the last item of a branch was: it decides what may follow.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    /// Nothing yet (start of a branch): a quantifier has nothing to repeat.
    Nothing,
    /// A character, class or group: may be repeated.
    Repeatable,
    /// `^`, `\A`, `\b`, …: Python refuses to repeat it.
    Assertion,
    /// A repeated item: another quantifier is Python's "multiple repeat".
    Repeated,
    /// A `$` (without `m`): nothing may follow.
    EndDollar,
    /// A group with a branch ending in such a `$`: nothing may follow.
    EndDollarGroup,
}

/// A parsed escape.
enum Escape {
    Char(char),
    /// `\d`, `\s`, `\w` and their negations.
    Set(SetKind, bool),
    /// A zero-width assertion, in Rust syntax.
    Assertion(&'static str),
}

#[derive(Clone, Copy)]
enum SetKind {
    Digit,
    Space,
    Word,
}

impl SetKind {
    /// The set outside a class (`negated`: its complement).
    fn outside(self, negated: bool) -> &'static str {
        match (self, negated) {
            (SetKind::Digit, false) => r"\d",
            (SetKind::Digit, true) => r"\D",
            (SetKind::Space, false) => r"[\s\x{1C}-\x{1F}]",
            (SetKind::Space, true) => r"[^\s\x{1C}-\x{1F}]",
            (SetKind::Word, false) => r"[\p{L}\p{N}_]",
            (SetKind::Word, true) => r"[^\p{L}\p{N}_]",
        }
    }

    /// The set as items of an enclosing class.
    fn inside(self, negated: bool) -> &'static str {
        match (self, negated) {
            (SetKind::Space, false) => r"\s\x{1C}-\x{1F}",
            (SetKind::Word, false) => r"\p{L}\p{N}_",
            _ => self.outside(negated),
        }
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    out: String,
    /// The `m` flag is on here (it changes what `$` means).
    multiline: bool,
    group_names: Vec<String>,
    word_boundary: bool,
    non_word_boundary: bool,
    /// Write `\B` as `[^\s\S]` (see [`translate`]).
    empty_b: bool,
    case_insensitive: bool,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Branches separated by `|`, up to a `)` or the end. True if a branch
    /// ends with a `$` that must stay last.
    fn alternation(&mut self, depth: usize) -> Result<bool, String> {
        let mut ends_with_dollar = false;
        loop {
            if matches!(self.branch(depth)?, Last::EndDollar | Last::EndDollarGroup) {
                ends_with_dollar = true;
            }
            if self.eat('|') {
                self.out.push('|');
            } else {
                return Ok(ends_with_dollar);
            }
        }
    }

    /// One branch: items up to `|`, `)` or the end.
    fn branch(&mut self, depth: usize) -> Result<Last, String> {
        let mut last = Last::Nothing;
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let at = self.pos;
            if let Some(q) = self.quantifier()? {
                match last {
                    Last::Nothing | Last::Assertion | Last::EndDollar => {
                        return Err(format!(
                            "nothing to repeat at position {at} (Python refuses it)"
                        ))
                    }
                    Last::Repeated => {
                        return Err(format!(
                            "multiple repeat at position {at} (Python refuses it)"
                        ))
                    }
                    Last::EndDollarGroup => {
                        return Err(format!(
                            "a group ending in `$` is repeated (position {at}): Python's `$` also \
                             matches before a final newline, which the regex crate can only say at \
                             the end of a branch"
                        ))
                    }
                    Last::Repeatable => {}
                }
                self.out.push_str(&q);
                if self.eat('?') {
                    self.out.push('?');
                } else if self.peek() == Some('+') {
                    return Err(format!(
                        "possessive quantifier at position {at}: the regex crate has none"
                    ));
                }
                last = Last::Repeated;
                continue;
            }
            if matches!(last, Last::EndDollar | Last::EndDollarGroup) {
                return Err(format!(
                    "`$` is followed by more pattern (position {at}): Python's `$` also matches \
                     before a final newline, which the regex crate can only say at the end of a \
                     branch"
                ));
            }
            if let Some(item) = self.item(depth)? {
                last = item;
            }
        }
        Ok(last)
    }

    /// A quantifier at the cursor (consumed), in Rust syntax; `None` if there
    /// is none (a `{` that is not one is a literal, as in Python).
    fn quantifier(&mut self) -> Result<Option<String>, String> {
        let q = match self.peek() {
            Some('*') => "*".to_string(),
            Some('+') => "+".to_string(),
            Some('?') => "?".to_string(),
            Some('{') => return self.braces(),
            _ => return Ok(None),
        };
        self.pos += 1;
        Ok(Some(q))
    }

    /// `{m}`, `{m,}`, `{,n}`, `{m,n}`, `{,}` as Python reads them.
    fn braces(&mut self) -> Result<Option<String>, String> {
        let start = self.pos;
        self.pos += 1;
        let digits = |p: &mut Parser| {
            let mut s = String::new();
            while let Some(c) = p.peek().filter(char::is_ascii_digit) {
                s.push(c);
                p.pos += 1;
            }
            s
        };
        let lo = digits(self);
        let hi = if self.eat(',') {
            Some(digits(self))
        } else {
            None
        };
        if !self.eat('}') || (lo.is_empty() && hi.is_none()) {
            // Not a quantifier: `{` is a literal (Python: `{}`, `{a`, `{1, 2}`).
            self.pos = start;
            return Ok(None);
        }
        let number = |s: &str| -> Result<u32, String> {
            s.parse::<u32>()
                .map_err(|_| format!("repetition count {s} is too large"))
        };
        let min = if lo.is_empty() { 0 } else { number(&lo)? };
        Ok(Some(match hi {
            None => format!("{{{min}}}"),
            Some(h) if h.is_empty() => format!("{{{min},}}"),
            Some(h) => {
                let max = number(&h)?;
                if max < min {
                    return Err(format!(
                        "min repeat greater than max repeat at position {start} (Python refuses it)"
                    ));
                }
                format!("{{{min},{max}}}")
            }
        }))
    }

    /// One item (consumed and written); `None` for a comment.
    fn item(&mut self, depth: usize) -> Result<Option<Last>, String> {
        let at = self.pos;
        let Some(c) = self.next() else {
            return Ok(None);
        };
        Ok(Some(match c {
            '(' => return self.group(at, depth),
            '[' => {
                self.class(at)?;
                Last::Repeatable
            }
            '.' => {
                self.out.push('.');
                Last::Repeatable
            }
            '^' => {
                self.out.push('^');
                Last::Assertion
            }
            '$' if self.multiline => {
                self.out.push('$');
                Last::Assertion
            }
            '$' => {
                self.out.push_str(r"(?:\n?\z)");
                Last::EndDollar
            }
            '\\' => match self.escape(false, at)? {
                Escape::Char(ch) => {
                    push_literal(&mut self.out, ch);
                    Last::Repeatable
                }
                Escape::Set(kind, negated) => {
                    self.out.push_str(kind.outside(negated));
                    Last::Repeatable
                }
                Escape::Assertion(a) => {
                    self.out.push_str(a);
                    Last::Assertion
                }
            },
            ch => {
                push_literal(&mut self.out, ch);
                Last::Repeatable
            }
        }))
    }

    /// After `(`: the group's kind, its content, its `)`.
    fn group(&mut self, at: usize, depth: usize) -> Result<Option<Last>, String> {
        if depth >= MAX_DEPTH {
            return Err(format!("groups nested deeper than {MAX_DEPTH}"));
        }
        let saved_multiline = self.multiline;
        if self.eat('?') {
            match self.next() {
                Some(':') => self.out.push_str("(?:"),
                Some('P') => match self.next() {
                    Some('<') => {
                        let name = self.group_name(at)?;
                        self.group_names.push(name);
                        self.out.push_str("(?:");
                    }
                    Some('=') => {
                        return Err(format!(
                            "backreference (?P=…) at position {at}: the regex crate has none"
                        ))
                    }
                    _ => {
                        return Err(format!(
                            "unknown extension (?P at position {at} (Python refuses it)"
                        ))
                    }
                },
                Some('=') | Some('!') => {
                    return Err(format!(
                        "lookahead at position {at}: the regex crate has no lookaround"
                    ))
                }
                Some('<') if matches!(self.peek(), Some('=') | Some('!')) => {
                    return Err(format!(
                        "lookbehind at position {at}: the regex crate has no lookaround"
                    ))
                }
                Some('>') => {
                    return Err(format!(
                        "atomic group at position {at}: the regex crate has none"
                    ))
                }
                Some('(') => {
                    return Err(format!(
                        "conditional group at position {at}: the regex crate has none"
                    ))
                }
                Some('#') => {
                    // A comment, up to the first `)`; it matches nothing.
                    while let Some(c) = self.next() {
                        if c == ')' {
                            return Ok(None);
                        }
                    }
                    return Err(format!(
                        "unterminated comment at position {at} (Python refuses it)"
                    ));
                }
                Some(c) if "aiLmsux-".contains(c) => {
                    self.pos -= 1;
                    self.flags(at)?;
                }
                _ => {
                    return Err(format!(
                        "unknown extension at position {at} (Python refuses it)"
                    ))
                }
            }
        } else {
            self.out.push_str("(?:");
        }
        let ends_with_dollar = self.alternation(depth + 1)?;
        if !self.eat(')') {
            return Err(format!(
                "missing ), unterminated subpattern at position {at} (Python refuses it)"
            ));
        }
        self.out.push(')');
        self.multiline = saved_multiline;
        Ok(Some(if ends_with_dollar {
            Last::EndDollarGroup
        } else {
            Last::Repeatable
        }))
    }

    /// `(?P<` … `>`: a name Python accepts (ASCII identifiers only here).
    fn group_name(&mut self, at: usize) -> Result<String, String> {
        let mut name = String::new();
        loop {
            match self.next() {
                Some('>') => break,
                Some(c) => name.push(c),
                None => {
                    return Err(format!(
                        "missing >, unterminated name at position {at} (Python refuses it)"
                    ))
                }
            }
        }
        let mut chars = name.chars();
        let ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(format!(
                "group name {name:?} at position {at} is not an ASCII identifier"
            ));
        }
        Ok(name)
    }

    /// Inline flags after `(?`: only scoped `i`, `m`, `s` groups are kept.
    fn flags(&mut self, at: usize) -> Result<(), String> {
        let mut on = String::new();
        let mut off = String::new();
        let mut turning_off = false;
        loop {
            match self.next() {
                Some(':') => break,
                Some(')') => {
                    return Err(format!(
                        "global inline flags (?{on}{}{off}) at position {at}: Keylime joins the \
                         excludes as (p1)|(p2)|… and Python 3.11 refuses global flags that are not \
                         at the very start, so Keylime would ignore every exclude; use a scoped \
                         group such as (?i:…)",
                        if turning_off { "-" } else { "" }
                    ))
                }
                Some('-') if !turning_off => turning_off = true,
                Some(c) if "imsx".contains(c) || (!turning_off && "aLu".contains(c)) => {
                    if turning_off { &mut off } else { &mut on }.push(c)
                }
                _ => {
                    return Err(format!(
                        "bad inline flags at position {at} (Python refuses them)"
                    ))
                }
            }
        }
        if turning_off && off.is_empty() {
            return Err(format!("missing flag at position {at} (Python refuses it)"));
        }
        if on.is_empty() && off.is_empty() {
            return Err(format!("missing flag at position {at} (Python refuses it)"));
        }
        if let Some(c) = on.chars().find(|c| off.contains(*c)) {
            return Err(format!(
                "flag {c} turned on and off at position {at} (Python refuses it)"
            ));
        }
        if let Some(c) = on.chars().chain(off.chars()).find(|c| "aLux".contains(*c)) {
            return Err(format!(
                "flag {c} at position {at}: {}",
                match c {
                    'x' => "verbose patterns differ between Python and the regex crate",
                    _ => "Python's a/L/u flags have no equivalent here",
                }
            ));
        }
        if on.contains('m') {
            self.multiline = true;
        }
        if off.contains('m') {
            self.multiline = false;
        }
        if on.contains('i') {
            self.case_insensitive = true;
        }
        self.out.push_str("(?");
        self.out.push_str(&on);
        if !off.is_empty() {
            self.out.push('-');
            self.out.push_str(&off);
        }
        self.out.push(':');
        Ok(())
    }

    /// After `[`: a character class, every literal written as `\x{…}`.
    fn class(&mut self, at: usize) -> Result<(), String> {
        let unterminated =
            || format!("unterminated character set at position {at} (Python refuses it)");
        self.out.push('[');
        if self.eat('^') {
            self.out.push('^');
        }
        let mut first = true;
        loop {
            let here = self.pos;
            let c = self.next().ok_or_else(unterminated)?;
            if c == ']' && !first {
                break;
            }
            first = false;
            let lo = if c == '\\' {
                self.escape(true, here)?
            } else {
                Escape::Char(c)
            };
            let range = self.peek() == Some('-') && !matches!(self.peek_at(1), Some(']') | None);
            if !range {
                match lo {
                    Escape::Char(ch) => push_hex(&mut self.out, ch),
                    Escape::Set(kind, negated) => self.out.push_str(kind.inside(negated)),
                    Escape::Assertion(_) => {
                        return Err(format!("assertion in a class at position {here}"))
                    }
                }
                continue;
            }
            self.pos += 1; // the `-`
            let there = self.pos;
            let c2 = self.next().ok_or_else(unterminated)?;
            let hi = if c2 == '\\' {
                self.escape(true, there)?
            } else {
                Escape::Char(c2)
            };
            match (lo, hi) {
                (Escape::Char(a), Escape::Char(b)) if a <= b => {
                    push_hex(&mut self.out, a);
                    self.out.push('-');
                    push_hex(&mut self.out, b);
                }
                _ => {
                    return Err(format!(
                        "bad character range at position {here} (Python refuses it)"
                    ))
                }
            }
        }
        self.out.push(']');
        Ok(())
    }

    /// After `\` (at position `at`), in a class or not.
    fn escape(&mut self, in_class: bool, at: usize) -> Result<Escape, String> {
        let bad = |what: String| format!("{what} at position {at} (Python refuses it)");
        let c = self
            .next()
            .ok_or_else(|| bad("bad escape (end of pattern)".into()))?;
        let ch = |c: char| Ok(Escape::Char(c));
        match c {
            'A' if !in_class => Ok(Escape::Assertion(r"\A")),
            'Z' if !in_class => Ok(Escape::Assertion(r"\z")),
            'b' if in_class => ch('\u{8}'),
            'b' if !in_class => {
                self.word_boundary = true;
                Ok(Escape::Assertion(r"\b"))
            }
            'B' if !in_class => {
                self.word_boundary = true;
                self.non_word_boundary = true;
                Ok(Escape::Assertion(if self.empty_b {
                    r"[^\s\S]"
                } else {
                    r"\B"
                }))
            }
            'd' | 'D' => Ok(Escape::Set(SetKind::Digit, c == 'D')),
            's' | 'S' => Ok(Escape::Set(SetKind::Space, c == 'S')),
            'w' | 'W' => Ok(Escape::Set(SetKind::Word, c == 'W')),
            'a' => ch('\u{7}'),
            'f' => ch('\u{c}'),
            'n' => ch('\n'),
            'r' => ch('\r'),
            't' => ch('\t'),
            'v' => ch('\u{b}'),
            'x' => self.hex_escape(2, at),
            'u' => self.hex_escape(4, at),
            'U' => self.hex_escape(8, at),
            'N' => Err(format!(
                "named character \\N{{…}} at position {at}: not supported by this import"
            )),
            '0' => self.octal(0, 2, at),
            '1'..='7' if in_class => self.octal(c as u32 - '0' as u32, 2, at),
            '1'..='9' if !in_class => {
                // Python: three octal digits are a character, else a group reference.
                let d1 = self.peek().filter(char::is_ascii_digit);
                let d2 = self.peek_at(1).filter(|d| ('0'..='7').contains(d));
                if ('1'..='7').contains(&c)
                    && d1.is_some_and(|d| ('0'..='7').contains(&d))
                    && d2.is_some()
                {
                    self.octal(c as u32 - '0' as u32, 2, at)
                } else {
                    Err(format!(
                        "backreference at position {at}: the regex crate has none"
                    ))
                }
            }
            c if c.is_ascii_alphanumeric() => Err(bad(format!("bad escape \\{c}"))),
            c => ch(c),
        }
    }

    /// `n` hex digits after `\x`, `\u` or `\U`, exactly.
    fn hex_escape(&mut self, n: usize, at: usize) -> Result<Escape, String> {
        let mut v: u32 = 0;
        for _ in 0..n {
            let d = self
                .peek()
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| format!("incomplete escape at position {at} (Python refuses it)"))?;
            self.pos += 1;
            v = v.saturating_mul(16).saturating_add(d);
        }
        match char::from_u32(v) {
            Some(c) => Ok(Escape::Char(c)),
            None if (0xD800..=0xDFFF).contains(&v) => Err(format!(
                "escape at position {at} is a lone surrogate, which no UTF-8 path holds"
            )),
            None => Err(format!("bad escape at position {at} (Python refuses it)")),
        }
    }

    /// An octal escape: `first` and up to `more` further octal digits.
    fn octal(&mut self, first: u32, more: usize, at: usize) -> Result<Escape, String> {
        let mut v = first;
        for _ in 0..more {
            match self.peek().and_then(|c| c.to_digit(8)) {
                Some(d) => {
                    v = v * 8 + d;
                    self.pos += 1;
                }
                None => break,
            }
        }
        if v > 0o377 {
            return Err(format!(
                "octal escape at position {at} is above \\377 (Python refuses it)"
            ));
        }
        char::from_u32(v)
            .map(Escape::Char)
            .ok_or_else(|| format!("bad octal escape at position {at}"))
    }
}

/// A literal outside a class: as itself when plain, else escaped.
fn push_literal(out: &mut String, c: char) {
    if c.is_ascii_alphanumeric()
        || "/_-,:;=@%!'\"<> ".contains(c)
        || (!c.is_ascii() && !c.is_control())
    {
        out.push(c);
    } else if c.is_ascii_punctuation() {
        out.push('\\');
        out.push(c);
    } else {
        push_hex(out, c);
    }
}

/// `\x{HEX}`: a literal the regex crate reads the same anywhere.
fn push_hex(out: &mut String, c: char) {
    let _ = write!(out, "\\x{{{:X}}}", c as u32);
}

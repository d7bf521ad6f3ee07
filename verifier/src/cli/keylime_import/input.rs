//! Reading a Keylime runtime policy: JSON as Python's `json.loads` reads it
//! (duplicate keys: the last wins), a DSSE envelope unwrapped as
//! `ima.deserialize_runtime_policy` does, then the checks of Keylime 7.14.3's
//! `RUNTIME_POLICY_SCHEMA` (`ima.validate_runtime_policy`), each error naming
//! the key. One pass over the bytes; strings without escapes stay borrowed,
//! so a million digests cost little more than the input.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::ImportError;

/// A JSON string, borrowed from the input when it has no escapes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Text<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// What a JSON value is, in the words of Python's jsonschema.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The `deserialize_any` methods for values of the wrong kind: each is
/// consumed and named, for the schema check to report.
macro_rules! other_kinds {
    ($other:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($other("a boolean"))
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($other("a number"))
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($other("a number"))
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($other("a number"))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($other("null"))
        }
    };
    ($other:expr, str) => {
        other_kinds!($other);
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($other("a string"))
        }
    };
    ($other:expr, seq) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
            while s.next_element::<IgnoredAny>()?.is_some() {}
            Ok($other("an array"))
        }
    };
    ($other:expr, map) => {
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
            while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok($other("an object"))
        }
    };
}

/// One item of a digest list: a string, or what else it was.
pub(super) enum Item<'a> {
    Digest(Text<'a>),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Item<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Item<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a digest")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Item<'de>, E> {
                Ok(Item::Digest(Text(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Item<'de>, E> {
                Ok(Item::Digest(Text(Cow::Owned(v.to_owned()))))
            }
            other_kinds!(Item::Other);
            other_kinds!(Item::Other, seq);
            other_kinds!(Item::Other, map);
        }
        d.deserialize_any(V)
    }
}

/// The value of one name in a digests object.
pub(super) enum List<'a> {
    Digests(Vec<Item<'a>>),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for List<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = List<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of digests")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<List<'de>, A::Error> {
                let mut items = Vec::with_capacity(s.size_hint().unwrap_or(1).min(16));
                while let Some(item) = s.next_element()? {
                    items.push(item);
                }
                Ok(List::Digests(items))
            }
            other_kinds!(List::Other, str);
            other_kinds!(List::Other, map);
        }
        d.deserialize_any(V)
    }
}

/// `digests`, `keyrings` or `ima-buf`: name → digests, in input order.
pub(super) enum DigestsObject<'a> {
    Object(Vec<(Text<'a>, List<'a>)>),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for DigestsObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DigestsObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of digest lists")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<DigestsObject<'de>, A::Error> {
                let mut entries = Vec::with_capacity(m.size_hint().unwrap_or(0));
                while let Some(entry) = m.next_entry()? {
                    entries.push(entry);
                }
                Ok(DigestsObject::Object(entries))
            }
            other_kinds!(DigestsObject::Other, str);
            other_kinds!(DigestsObject::Other, seq);
        }
        d.deserialize_any(V)
    }
}

/// The top-level object as read, before any check.
#[derive(Default)]
struct Raw<'a> {
    payload: Option<Value>,
    meta: Option<Value>,
    release: Option<Value>,
    digests: Option<DigestsObject<'a>>,
    excludes: Option<Value>,
    keyrings: Option<DigestsObject<'a>>,
    ima: Option<Value>,
    ima_buf: Option<DigestsObject<'a>>,
    verification_keys: Option<Value>,
    unknown: Vec<String>,
    repeated: Vec<String>,
    not_object: Option<&'static str>,
}

struct RawSeed;

impl<'de> DeserializeSeed<'de> for RawSeed {
    type Value = Raw<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Raw<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Raw<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a Keylime runtime policy (a JSON object)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Raw<'de>, A::Error> {
                let mut raw = Raw::default();
                while let Some(key) = m.next_key::<Text<'de>>()? {
                    let key = key.0;
                    let seen = match key.as_ref() {
                        "payload" => raw.payload.replace(m.next_value()?).is_some(),
                        "meta" => raw.meta.replace(m.next_value()?).is_some(),
                        "release" => raw.release.replace(m.next_value()?).is_some(),
                        "digests" => raw.digests.replace(m.next_value()?).is_some(),
                        "excludes" => raw.excludes.replace(m.next_value()?).is_some(),
                        "keyrings" => raw.keyrings.replace(m.next_value()?).is_some(),
                        "ima" => raw.ima.replace(m.next_value()?).is_some(),
                        "ima-buf" => raw.ima_buf.replace(m.next_value()?).is_some(),
                        "verification-keys" => {
                            raw.verification_keys.replace(m.next_value()?).is_some()
                        }
                        other => {
                            m.next_value::<IgnoredAny>()?;
                            raw.unknown.push(other.to_string());
                            false
                        }
                    };
                    if seen {
                        raw.repeated.push(key.into_owned());
                    }
                }
                Ok(raw)
            }
            other_kinds!(
                |k| Raw {
                    not_object: Some(k),
                    ..Raw::default()
                },
                str
            );
            other_kinds!(
                |k| Raw {
                    not_object: Some(k),
                    ..Raw::default()
                },
                seq
            );
        }
        d.deserialize_any(V)
    }
}

/// A checked digests object: name → digest strings (bare lowercase hex), in
/// input order, names possibly repeated (Python keeps the last).
pub(super) type Digests<'a> = Vec<(Text<'a>, Vec<Text<'a>>)>;

/// A Keylime runtime policy that passed Keylime's schema.
pub(super) struct RuntimePolicy<'a> {
    pub meta_version: u64,
    pub generator: u64,
    pub timestamp: Option<String>,
    pub release: u64,
    pub digests: Digests<'a>,
    pub excludes: Vec<String>,
    pub keyrings: Digests<'a>,
    pub ima_buf: Digests<'a>,
    pub ignored_keyrings: Vec<String>,
    pub log_hash_alg: String,
    pub verification_keys: String,
    /// Top-level keys the schema does not name (Keylime ignores them).
    pub unknown_keys: Vec<String>,
    /// Top-level keys given more than once (the last is used).
    pub repeated_keys: Vec<String>,
    /// Unwrapped from a DSSE envelope (signature not checked).
    pub from_envelope: bool,
}

/// Parses a runtime policy, unwrapping a DSSE envelope once.
///
/// A DSSE payload is decoded into `scratch`, which the returned policy may
/// borrow from.
pub(super) fn parse<'a>(
    json: &'a [u8],
    scratch: &'a mut Vec<u8>,
) -> Result<RuntimePolicy<'a>, ImportError> {
    let json = json.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(json);
    let raw = read_json(json)?;
    // ima.deserialize_runtime_policy: a truthy "payload" is the policy, base64.
    if let Some(payload) = raw.payload.as_ref().filter(|p| truthy(p)) {
        let Value::String(text) = payload else {
            return Err(ImportError::Envelope(format!(
                "`payload` is {}, not a base64 string",
                kind(payload)
            )));
        };
        *scratch = dsse_decode(text)
            .ok_or_else(|| ImportError::Envelope("`payload` is neither hex nor base64".into()))?;
        let inner = read_json(scratch.as_slice())
            .map_err(|e| ImportError::Envelope(format!("its payload: {e}")))?;
        let mut policy = check(inner).map_err(|e| match e {
            ImportError::Json(m) => ImportError::Envelope(format!("its payload: {m}")),
            e => e,
        })?;
        policy.from_envelope = true;
        return Ok(policy);
    }
    check(raw)
}

fn read_json(json: &[u8]) -> Result<Raw<'_>, ImportError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let raw = RawSeed
        .deserialize(&mut de)
        .and_then(|raw| de.end().map(|()| raw))
        .map_err(|e| ImportError::Json(e.to_string()))?;
    Ok(raw)
}

/// Python truthiness of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `dsse.b64dec`: hex first, then base64, then URL-safe base64 (all strict).
fn dsse_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    if let Ok(b) = hex::decode(text) {
        if !b.is_empty() {
            return Some(b);
        }
    }
    let std = base64::engine::general_purpose::STANDARD;
    std.decode(text)
        .ok()
        .or_else(|| std.decode(text.replace('-', "+").replace('_', "/")).ok())
}

fn schema(reason: String) -> ImportError {
    ImportError::Schema(reason)
}

/// The keys `RUNTIME_POLICY_SCHEMA` requires.
const REQUIRED: &str =
    "meta, release, digests, excludes, keyrings, ima, ima-buf and verification-keys";

fn required<T>(v: Option<T>, key: &str) -> Result<T, ImportError> {
    v.ok_or_else(|| {
        schema(format!(
            "`{key}` is missing (Keylime 7.14 requires {REQUIRED}; an older policy can be \
             updated with Keylime's `keylime_convert_runtime_policy -r FILE -o NEW`)"
        ))
    })
}

/// A jsonschema "integer" at least `min`: a whole number (1.0 counts, a boolean does not).
fn integer(v: &Value, what: &str, min: u64) -> Result<u64, ImportError> {
    let n = match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1e19)
                .map(|f| f as u64)
        }),
        _ => None,
    };
    match n {
        Some(n) if n >= min => Ok(n),
        _ => Err(schema(format!(
            "`{what}` is {v}, not an integer of at least {min}"
        ))),
    }
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, ImportError> {
    let Value::Array(items) = v else {
        return Err(schema(format!(
            "`{what}` is {}, not an array of strings",
            kind(v)
        )));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s.clone()),
            other => Err(schema(format!(
                "`{what}[{i}]` is {}, not a string",
                kind(other)
            ))),
        })
        .collect()
}

fn object<'v>(v: &'v Value, what: &str) -> Result<&'v serde_json::Map<String, Value>, ImportError> {
    v.as_object()
        .ok_or_else(|| schema(format!("`{what}` is {}, not an object", kind(v))))
}

fn check(raw: Raw<'_>) -> Result<RuntimePolicy<'_>, ImportError> {
    if let Some(k) = raw.not_object {
        return Err(ImportError::Json(format!(
            "the top level is {k}, not a JSON object"
        )));
    }
    let meta = required(raw.meta, "meta")?;
    let meta_obj = object(&meta, "meta")?;
    let meta_version = integer(
        required(meta_obj.get("version"), "meta.version")?,
        "meta.version",
        0,
    )?;
    let generator = integer(
        required(meta_obj.get("generator"), "meta.generator")?,
        "meta.generator",
        0,
    )?;
    if generator > 3 {
        return Err(schema(format!(
            "`meta.generator` is {generator}, above 3 (LegacyAllowList)"
        )));
    }
    let timestamp = match meta_obj.get("timestamp") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(schema(format!(
                "`meta.timestamp` is {}, not a string",
                kind(other)
            )))
        }
    };
    let release = integer(&required(raw.release, "release")?, "release", 0)?;
    let digests = digests_object(required(raw.digests, "digests")?, "digests")?;
    let excludes = strings(&required(raw.excludes, "excludes")?, "excludes")?;
    let keyrings = digests_object(required(raw.keyrings, "keyrings")?, "keyrings")?;
    let ima = required(raw.ima, "ima")?;
    let ima_obj = object(&ima, "ima")?;
    let ignored_keyrings = strings(
        required(ima_obj.get("ignored_keyrings"), "ima.ignored_keyrings")?,
        "ima.ignored_keyrings",
    )?;
    let log_hash_alg = match required(ima_obj.get("log_hash_alg"), "ima.log_hash_alg")? {
        Value::String(s) if ["sha1", "sha256", "sha384", "sha512"].contains(&s.as_str()) => {
            s.clone()
        }
        other => {
            return Err(schema(format!(
                "`ima.log_hash_alg` is {other}, not one of sha1, sha256, sha384, sha512"
            )))
        }
    };
    match required(ima_obj.get("dm_policy"), "ima.dm_policy")? {
        Value::Null => {}
        other => {
            return Err(ImportError::Unsupported(format!(
                "`ima.dm_policy` is {}: device-mapper policies are not imported (Assay has no \
                 equivalent, and Keylime 7.14's schema requires null)",
                kind(other)
            )))
        }
    }
    let ima_buf = digests_object(required(raw.ima_buf, "ima-buf")?, "ima-buf")?;
    let verification_keys = match required(raw.verification_keys, "verification-keys")? {
        Value::String(s) => s,
        other => {
            return Err(schema(format!(
                "`verification-keys` is {}, not a string (it holds JSON as text)",
                kind(&other)
            )))
        }
    };
    let mut unknown_keys = raw.unknown;
    if raw.payload.is_some() {
        unknown_keys.push("payload".into());
    }
    Ok(RuntimePolicy {
        meta_version,
        generator,
        timestamp,
        release,
        digests,
        excludes,
        keyrings,
        ima_buf,
        ignored_keyrings,
        log_hash_alg,
        verification_keys,
        unknown_keys,
        repeated_keys: raw.repeated,
        from_envelope: false,
    })
}

/// The schema's `digests-object`: every value a non-empty array of strings
/// matching `^[0-9a-f]{40,128}$` (Python's `$` also allows one final newline).
fn digests_object<'a>(obj: DigestsObject<'a>, what: &str) -> Result<Digests<'a>, ImportError> {
    let entries = match obj {
        DigestsObject::Object(entries) => entries,
        DigestsObject::Other(k) => return Err(schema(format!("`{what}` is {k}, not an object"))),
    };
    let mut out = Vec::with_capacity(entries.len());
    for (name, list) in entries {
        let items = match list {
            List::Digests(items) if !items.is_empty() => items,
            List::Digests(_) => {
                return Err(schema(format!(
                    "`{what}.{:?}` is an empty list (Keylime's schema wants at least one digest)",
                    name.0
                )))
            }
            List::Other(k) => {
                return Err(schema(format!(
                    "`{what}.{:?}` is {k}, not a list of digests",
                    name.0
                )))
            }
        };
        let mut digests = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let d = match item {
                Item::Digest(d) => d,
                Item::Other(k) => {
                    return Err(schema(format!(
                        "`{what}.{:?}[{i}]` is {k}, not a string",
                        name.0
                    )))
                }
            };
            let hex = d.0.strip_suffix('\n').unwrap_or(&d.0);
            if !(40..=128).contains(&hex.len())
                || !hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(schema(format!(
                    "`{what}.{:?}[{i}]` = {:?} is not 40 to 128 lowercase hex digits (Keylime's \
                     digests are bare hex, without an algorithm)",
                    name.0, d.0
                )));
            }
            digests.push(d);
        }
        out.push((name, digests));
    }
    Ok(out)
}

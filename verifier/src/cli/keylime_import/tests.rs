//! Unit tests of the Keylime import: the mapping, every refusal and warning,
//! TOML escaping, the exclude rewriting, the verification keys.

use serde_json::{json, Value};

use super::*;

/// Keylime's `EMPTY_RUNTIME_POLICY`, with `changes` merged in at the top level.
fn policy(changes: Value) -> Value {
    let mut p = json!({
        "meta": {"version": 1, "generator": 1},
        "release": 0,
        "digests": {},
        "excludes": [],
        "keyrings": {},
        "ima": {"ignored_keyrings": [], "log_hash_alg": "sha1", "dm_policy": null},
        "ima-buf": {},
        "verification-keys": "",
    });
    for (k, v) in changes.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

fn opts(boot_aggregate: BootAggregate) -> Options<'static> {
    Options {
        name: "imported",
        source: "p.json",
        boot_aggregate,
    }
}

fn convert_bytes(json: &[u8]) -> Result<Converted, ImportError> {
    convert(json, &opts(BootAggregate::Omit))
}

fn ok(p: &Value) -> Converted {
    convert_bytes(&serde_json::to_vec(p).unwrap()).unwrap_or_else(|e| panic!("{e}"))
}

fn refused(json: &[u8]) -> String {
    match convert_bytes(json) {
        Ok(c) => panic!("accepted:\n{}", c.toml),
        Err(e) => e.to_string(),
    }
}

fn refused_policy(p: &Value) -> String {
    refused(&serde_json::to_vec(p).unwrap())
}

/// The output as a TOML table (it must parse).
fn table(c: &Converted) -> toml::Table {
    c.toml
        .parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("{e}\n{}", c.toml))
}

fn hex_of(seed: u8, len: usize) -> String {
    hex::encode(vec![seed; len])
}

fn warned(c: &Converted, needle: &str) -> bool {
    c.warnings.iter().any(|w| w.contains(needle))
}

#[test]
fn digests_become_the_allowlist_with_the_algorithm_their_length_names() {
    let c = ok(&policy(json!({"digests": {
        "/usr/bin/b": [hex_of(1, 32), hex_of(2, 20), hex_of(1, 32)],
        "/usr/bin/a": [hex_of(3, 48), hex_of(4, 64)],
    }})));
    let t = table(&c);
    let allow = t["ima"]["allowlist"].as_table().unwrap();
    let keys: Vec<&String> = allow.keys().collect();
    assert_eq!(keys, ["/usr/bin/a", "/usr/bin/b"]);
    assert_eq!(
        allow["/usr/bin/a"].as_array().unwrap(),
        &vec![
            toml::Value::from(format!("sha384:{}", hex_of(3, 48))),
            toml::Value::from(format!("sha512:{}", hex_of(4, 64))),
        ]
    );
    // Repeated digests are listed once.
    assert_eq!(
        allow["/usr/bin/b"].as_array().unwrap(),
        &vec![
            toml::Value::from(format!("sha256:{}", hex_of(1, 32))),
            toml::Value::from(format!("sha1:{}", hex_of(2, 20))),
        ]
    );
    assert_eq!((c.paths, c.digests), (2, 4));
    assert_eq!(t["schema"].as_integer(), Some(1));
    assert_eq!(t["name"].as_str(), Some("imported"));
    assert_eq!(t["ima"]["pcr"].as_integer(), Some(10));
    assert!(warned(
        &c,
        "Keylime compares a measurement's digest with the listed hex alone"
    ));
    // No pending keys: the verifier's parser accepts it as it is today.
    assert!(c.extension_keys.is_empty());
    let p = assay_core::policy::Policy::parse("p.toml", &c.toml).unwrap();
    assert_eq!(p.ima().unwrap().allowlist.len(), 2);
}

#[test]
fn boot_aggregate_is_recomputed_or_listed_as_asked() {
    let listed = hex_of(9, 32);
    let p = serde_json::to_vec(&policy(
        json!({"digests": {"boot_aggregate": [listed], "/a": [hex_of(1, 20)]}}),
    ))
    .unwrap();
    let run = |mode| convert(&p, &opts(mode)).unwrap();

    let c = run(BootAggregate::Recompute);
    let t = table(&c);
    assert_eq!(t["ima"]["boot_aggregate"].as_bool(), Some(true));
    assert!(!t["ima"]["allowlist"]
        .as_table()
        .unwrap()
        .contains_key("boot_aggregate"));
    assert!(warned(
        &c,
        "--boot-aggregate allowlist keeps the listed values"
    ));
    assert_eq!(c.extension_keys, ["boot_aggregate"]);

    let c = run(BootAggregate::Allowlist);
    let t = table(&c);
    assert_eq!(t["ima"]["boot_aggregate"].as_bool(), Some(false));
    assert_eq!(
        t["ima"]["allowlist"]["boot_aggregate"].as_array().unwrap(),
        &vec![toml::Value::from(format!("sha256:{listed}"))]
    );

    let c = run(BootAggregate::Omit);
    let t = table(&c);
    assert!(!t["ima"].as_table().unwrap().contains_key("boot_aggregate"));
    assert!(t["ima"]["allowlist"]
        .as_table()
        .unwrap()
        .contains_key("boot_aggregate"));
    assert!(c.extension_keys.is_empty());
    assert!(warned(&c, "requiring the listed values too"));
    assert!(!warned(&c, "lists no boot_aggregate digest"));

    // Nothing listed: said, unless the verifier recomputes it.
    let none = serde_json::to_vec(&policy(json!({}))).unwrap();
    for (mode, says) in [
        (BootAggregate::Recompute, false),
        (BootAggregate::Allowlist, true),
        (BootAggregate::Omit, true),
    ] {
        let c = convert(&none, &opts(mode)).unwrap();
        assert_eq!(
            warned(&c, "lists no boot_aggregate digest"),
            says,
            "{mode:?}"
        );
    }
}

#[test]
fn digests_no_measurement_can_match_are_refused() {
    for (d, says) in [
        (
            "00112233445566778899001122334455667788990011223344556677889900",
            "has 62 hex digits",
        ),
        (&hex_of(1, 21)[..41], "has 41 hex digits"),
        (&format!("{}\n", hex_of(1, 32)), "has a final newline"),
    ] {
        let e = refused_policy(&policy(json!({"digests": {"/rootfs_data": [d]}})));
        assert!(e.contains("`digests.\"/rootfs_data\"[0]`"), "{e}");
        assert!(e.contains(says), "{e}");
        assert!(
            e.contains("Keylime accepts it, but no measurement can match it"),
            "{e}"
        );
    }
    let e = refused_policy(&policy(
        json!({"ima-buf": {"kexec-cmdline": ["ab".repeat(25)]}}),
    ));
    assert!(e.contains("`ima-buf.\"kexec-cmdline\"[0]`"), "{e}");
}

#[test]
fn what_keylimes_schema_refuses_is_refused_naming_the_key() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"digests": {"/a": ["sha256:".to_string() + &hex_of(1, 32)]}}),
            "`digests.\"/a\"[0]` = \"sha256:",
        ),
        (
            json!({"digests": {"/a": [hex_of(0xab, 32).to_uppercase()]}}),
            "not 40 to 128 lowercase hex digits",
        ),
        (
            json!({"digests": {"/a": []}}),
            "`digests.\"/a\"` is an empty list",
        ),
        (
            json!({"digests": {"/a": hex_of(1, 32)}}),
            "`digests.\"/a\"` is a string, not a list of digests",
        ),
        (
            json!({"digests": {"/a": [5]}}),
            "`digests.\"/a\"[0]` is a number, not a string",
        ),
        (
            json!({"digests": []}),
            "`digests` is an array, not an object",
        ),
        (
            json!({"keyrings": {".ima": [null]}}),
            "`keyrings.\".ima\"[0]` is null",
        ),
        (
            json!({"excludes": "/tmp"}),
            "`excludes` is a string, not an array of strings",
        ),
        (json!({"excludes": ["/a", 1]}), "`excludes[1]` is a number"),
        (
            json!({"meta": {"version": 1, "generator": 4}}),
            "`meta.generator` is 4, above 3",
        ),
        (
            json!({"meta": {"version": -1, "generator": 1}}),
            "`meta.version` is -1",
        ),
        (
            json!({"meta": {"generator": 1}}),
            "`meta.version` is missing",
        ),
        (
            json!({"meta": {"version": 1, "generator": 1, "timestamp": 5}}),
            "`meta.timestamp` is a number",
        ),
        (
            json!({"release": true}),
            "`release` is true, not an integer",
        ),
        (
            json!({"ima": {"ignored_keyrings": [], "log_hash_alg": "md5", "dm_policy": null}}),
            "`ima.log_hash_alg` is \"md5\"",
        ),
        (
            json!({"ima": {"ignored_keyrings": [], "log_hash_alg": "sha1"}}),
            "`ima.dm_policy` is missing",
        ),
        (
            json!({"ima": {"ignored_keyrings": "x", "log_hash_alg": "sha1", "dm_policy": null}}),
            "`ima.ignored_keyrings` is a string",
        ),
        (
            json!({"verification-keys": {}}),
            "`verification-keys` is an object, not a string",
        ),
    ];
    for (changes, says) in cases {
        let e = refused_policy(&policy(changes.clone()));
        assert!(e.contains(says), "{changes}: {e}");
    }
    // Every required key, missing.
    for key in [
        "meta",
        "release",
        "digests",
        "excludes",
        "keyrings",
        "ima",
        "ima-buf",
        "verification-keys",
    ] {
        let mut p = policy(json!({}));
        p.as_object_mut().unwrap().remove(key);
        let e = refused_policy(&p);
        assert!(e.contains(&format!("`{key}` is missing")), "{e}");
        assert!(e.contains("keylime_convert_runtime_policy"), "{e}");
    }
    // A whole-number float is an integer to jsonschema; a device-mapper policy is not imported.
    ok(&policy(json!({"release": 3.0})));
    let e = refused_policy(&policy(
        json!({"ima": {"ignored_keyrings": [], "log_hash_alg": "sha1", "dm_policy": {}}}),
    ));
    assert!(e.contains("device-mapper policies are not imported"), "{e}");
}

#[test]
fn malformed_input_is_an_error_never_a_panic() {
    for (bytes, says) in [
        (&b"{\n];"[..], "key must be a string at line 2 column 1"),
        (b"", "EOF while parsing"),
        (b"[]", "the top level is an array, not a JSON object"),
        (b"\"x\"", "the top level is a string"),
        (b"{} {}", "trailing characters"),
        (b"{\"digests\": {\"/\xff\": []}}", "invalid unicode"),
        (b"{\"digests\": {\"/a\": [\"\\ud800\"]}}", "hex escape"),
        (b"{\"release\": NaN}", "expected value"),
    ] {
        let e = refused(bytes);
        assert!(e.starts_with("not a Keylime runtime policy: "), "{e}");
        assert!(
            e.contains(says),
            "{:?}: {e}",
            String::from_utf8_lossy(bytes)
        );
    }
    // Deep nesting is refused by the JSON reader's recursion limit.
    let deep = format!(
        "{{\"meta\": {}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(refused(deep.as_bytes()).contains("recursion limit"));
    // A UTF-8 byte order mark is skipped, as Python's json.loads(bytes) does.
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend(serde_json::to_vec(&policy(json!({}))).unwrap());
    convert_bytes(&bom).unwrap();
}

#[test]
fn input_over_the_cap_is_refused_before_parsing() {
    let e = convert_capped(b"{}  ", &opts(BootAggregate::Omit), 3).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the runtime policy is 4 bytes, more than the 3-byte limit"
    );
    assert_eq!(MAX_INPUT_BYTES, 1 << 30);
}

#[test]
fn repeated_keys_keep_the_last_as_python_does() {
    let text = format!(
        r#"{{"meta": {{"version": 1, "generator": 1}}, "release": 0,
            "digests": {{"/a": ["{a}"], "/b": ["{b}"], "/a": ["{c}"]}},
            "excludes": ["/x"], "excludes": [], "keyrings": {{}},
            "ima": {{"ignored_keyrings": [], "log_hash_alg": "sha1", "dm_policy": null}},
            "ima-buf": {{}}, "verification-keys": "", "extra": {{"anything": [1]}}}}"#,
        a = hex_of(1, 32),
        b = hex_of(2, 32),
        c = hex_of(3, 32)
    );
    let c = convert_bytes(text.as_bytes()).unwrap();
    let t = table(&c);
    assert_eq!(
        t["ima"]["allowlist"]["/a"].as_array().unwrap(),
        &vec![toml::Value::from(format!("sha256:{}", hex_of(3, 32)))]
    );
    assert!(!t["ima"].as_table().unwrap().contains_key("excludes"));
    assert!(warned(&c, "digests: 1 names are given more than once"));
    assert!(warned(
        &c,
        "top-level keys [\"excludes\"] are given more than once"
    ));
    assert!(warned(
        &c,
        "top-level keys [\"extra\"] are not Keylime 7.14 runtime-policy keys"
    ));
}

#[test]
fn dsse_envelopes_are_unwrapped_once_and_said_to_be_unchecked() {
    use base64::Engine as _;
    let inner = serde_json::to_vec(&policy(json!({"digests": {"/a": [hex_of(1, 32)]}}))).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let url = base64::engine::general_purpose::URL_SAFE;
    for payload in [b64.encode(&inner), url.encode(&inner), hex::encode(&inner)] {
        let env = json!({"payload": payload, "payloadType": "application/vnd.keylime+json", "signatures": []});
        let c = ok(&env);
        assert!(table(&c)["ima"]["allowlist"]
            .as_table()
            .unwrap()
            .contains_key("/a"));
        assert!(warned(&c, "DSSE envelope whose signature was not checked"));
    }
    let e = refused_policy(&json!({"payload": 5}));
    assert!(e.contains("DSSE envelope: `payload` is a number"), "{e}");
    let e = refused_policy(&json!({"payload": "%%%"}));
    assert!(e.contains("neither hex nor base64"), "{e}");
    let e = refused_policy(&json!({"payload": b64.encode(b"[1]")}));
    assert!(
        e.contains("DSSE envelope: its payload: the top level is an array"),
        "{e}"
    );
    // Not unwrapped twice: an envelope in the payload is no policy.
    let twice = json!({"payload": b64.encode(serde_json::to_vec(&json!({"payload": b64.encode(&inner)})).unwrap())});
    assert!(refused_policy(&twice).contains("`meta` is missing"));
    // An empty payload is no envelope (Python: falsy).
    let c = ok(&policy(json!({"payload": ""})));
    assert!(warned(
        &c,
        "[\"payload\"] are not Keylime 7.14 runtime-policy keys"
    ));
}

#[test]
fn names_that_need_escaping_round_trip_through_toml() {
    let names = [
        "/q\"uote",
        "/back\\slash",
        "/ünïcødé/文件",
        "/tab\there",
        "/new\nline",
        "/cr\rx",
        "/nul\u{0}x",
        "/ctl\u{1}\u{1f}\u{7f}x",
        "/c1\u{85}x",
        "/apos'x",
        "/hash#x",
        "/brackets[]=x",
        "/emoji😀",
    ];
    let digests: serde_json::Map<String, Value> = names
        .iter()
        .map(|n| (n.to_string(), json!([hex_of(7, 32)])))
        .collect();
    let buffers: serde_json::Map<String, Value> = names
        .iter()
        .map(|n| {
            (
                n.trim_start_matches('/').to_string(),
                json!([hex_of(8, 20)]),
            )
        })
        .collect();
    let c = convert(
        &serde_json::to_vec(&policy(json!({"digests": digests, "ima-buf": buffers}))).unwrap(),
        &Options {
            name: "name \"with\" \\ and \n newline",
            source: "file\nwith\"odd\u{1}name.json",
            boot_aggregate: BootAggregate::Omit,
        },
    )
    .unwrap();
    let t = table(&c);
    assert_eq!(t["name"].as_str(), Some("name \"with\" \\ and \n newline"));
    assert!(t["description"]
        .as_str()
        .unwrap()
        .contains("file\nwith\"odd\u{1}name.json"));
    let allow = t["ima"]["allowlist"].as_table().unwrap();
    let bufs = t["ima"]["buffers"].as_table().unwrap();
    for n in names {
        assert!(allow.contains_key(n), "{n:?} in\n{}", c.toml);
        assert!(bufs.contains_key(n.trim_start_matches('/')), "{n:?}");
    }
    assert_eq!(allow.len(), names.len());
    // The comment line naming the source stays one comment line.
    assert!(c
        .toml
        .lines()
        .next()
        .unwrap()
        .starts_with("# Imported from the Keylime runtime policy \"file\\nwith"));
}

#[test]
fn relative_names_are_left_out_and_said() {
    let c = ok(&policy(json!({"digests": {
        "/abs": [hex_of(1, 32)],
        "memfd:x": [hex_of(1, 32)],
        "": [hex_of(1, 32)],
        "rel/a": [hex_of(1, 32)],
    }})));
    let allow = table(&c)["ima"]["allowlist"].as_table().unwrap().clone();
    assert_eq!(allow.keys().collect::<Vec<_>>(), ["/abs"]);
    assert!(warned(
        &c,
        "digests: 3 names are not absolute paths and are left out (\"\", \"memfd:x\", \"rel/a\")"
    ));
}

#[test]
fn keyrings_and_ima_buf_become_buffers() {
    let c = ok(&policy(json!({
        "keyrings": {".ima": [hex_of(1, 32)], ".builtin_trusted_keys": [hex_of(2, 32)]},
        "ima-buf": {"kexec-cmdline": [hex_of(3, 20)], ".ima": [hex_of(4, 32), hex_of(1, 32)]},
        "ima": {"ignored_keyrings": ["*"], "log_hash_alg": "sha1", "dm_policy": null},
    })));
    let t = table(&c);
    let b = t["ima"]["buffers"].as_table().unwrap();
    assert_eq!(
        b.keys().collect::<Vec<_>>(),
        [".builtin_trusted_keys", ".ima", "kexec-cmdline"]
    );
    assert_eq!(
        b[".ima"].as_array().unwrap(),
        &vec![
            toml::Value::from(format!("sha256:{}", hex_of(1, 32))),
            toml::Value::from(format!("sha256:{}", hex_of(4, 32))),
        ]
    );
    assert_eq!(
        b["kexec-cmdline"][0].as_str(),
        Some(format!("sha1:{}", hex_of(3, 20)).as_str())
    );
    assert_eq!(c.buffers, 3);
    assert_eq!(c.extension_keys, ["[ima.buffers]"]);
    assert!(warned(
        &c,
        "1 names are in both keyrings and ima-buf (\".ima\")"
    ));
    assert!(warned(
        &c,
        "ima.ignored_keyrings [\"*\"]: Keylime accepts any key measured into keyrings \".builtin_trusted_keys\", \".ima\""
    ));
    assert!(warned(&c, "trusts only the keys under [ima.keyrings]"));
}

#[test]
fn meta_release_and_log_hash_alg() {
    let c = ok(&policy(json!({
        "meta": {"version": 2, "generator": 3, "timestamp": "2024-10-09 18:47:35"},
        "release": 7,
        "ima": {"ignored_keyrings": [], "log_hash_alg": "sha256", "dm_policy": null},
    })));
    let t = table(&c);
    assert_eq!(t["version"].as_str(), Some("7"));
    let d = t["description"].as_str().unwrap();
    assert!(
        d.contains("meta version 2, generator 3, timestamp 2024-10-09 18:47:35, release 7"),
        "{d}"
    );
    assert!(warned(&c, "meta.version is 2"));
    assert!(warned(&c, "ima.log_hash_alg is sha256"));
    let plain = ok(&policy(json!({})));
    assert!(!table(&plain).contains_key("version"));
    assert!(plain
        .warnings
        .iter()
        .all(|w| !w.contains("log_hash_alg") && !w.contains("meta.version")));
}

// --- Keys -------------------------------------------------------------------

/// The verification keys of Keylime's test_ima_verification.py (RSA-2048 and
/// EC secp256k1) with their keyids, which its ima-sig test entries name.
const KEYLIME_KEYS: &str = r#"{"pubkeys": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA1cD7bW5tX5qIVgWskS5tzY+XpqWzcW6HFq5npj8dHFIWsAJJCUdoSU631hkyY8HP/RfXDPq/J4IeKvx35EVXj49t1Z1FTJBgUlEbkKvqm0rY6jo7PnJ6BsDRrauXtiEXVKNXcWXDk8ES+9v9Cz26BJYAr+5Xgm2aEyAbj8GhicxUZfsjDm8eJ7ZnQKuhF7jejG5dYAYxnBVu99bQJHI5Fsu3dAjGbys9v7ToNbonS+1bJXdHyEE0swhxBOPvvV6vx5CzRNw1Sou3rT19T4j8wpsFOyYXVcbbRVBAmBE2Qy2UHvojFqaJN/A9lztllyER1S5heGG6CxK3GoR6pkOXAQIDAQAB", "MFYwEAYHKoZIzj0CAQYFK4EEAAoDQgAEnNH3Y/xOTwRRd8D6hpodRLnVx71qDTLvJHouno7nU7JSzcXWN1PxK+HQEh1V7sMdwBER4KFKE635JTv6C+BRBg=="], "keyids": [4081397027, 1394556965]}"#;

/// An ECDSA P-256 public key (made with openssl for this test) and its keyidv2.
const P256_SPKI: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEN4UDBSChBaX5iqPTq3TBe8z8vtusIoAu7v0K41zdvttNi2sUPTDz8CIqg5P6Ky0XMLgRc5D7p7asU/TjDK9Xbw==";
const P256_KEYID: u32 = 0x9eed_5080;

#[test]
fn verification_keys_become_pem_keys_under_ima_keyrings() {
    use base64::Engine as _;
    let mut listed: Value = serde_json::from_str(KEYLIME_KEYS).unwrap();
    listed["pubkeys"]
        .as_array_mut()
        .unwrap()
        .push(json!(P256_SPKI));
    listed["keyids"]
        .as_array_mut()
        .unwrap()
        .push(json!(P256_KEYID));
    let c = ok(&policy(json!({"verification-keys": listed.to_string()})));
    let t = table(&c);
    let keys = t["ima"]["keyrings"]["keylime"]["keys"].as_array().unwrap();
    // RSA-2048 and P-256; secp256k1 is left out, and said to be.
    assert_eq!(keys.len(), 2);
    assert_eq!(c.keys, 2);
    assert_eq!(c.extension_keys, ["[ima.keyrings]"]);
    assert!(warned(
        &c,
        "pubkeys[1] is left out: Assay's IMA keyring does not take it"
    ));
    // The keyids Keylime lists are the keys' own (no warning), and each PEM
    // holds the DER Keylime listed, 64 characters a line.
    assert!(
        c.warnings.iter().all(|w| !w.contains("keyid")),
        "{:?}",
        c.warnings
    );
    let pubkeys = listed["pubkeys"].as_array().unwrap();
    for (pem, b64) in keys.iter().zip([&pubkeys[0], &pubkeys[2]]) {
        let pem = pem.as_str().unwrap();
        assert!(
            pem.starts_with("-----BEGIN PUBLIC KEY-----\n")
                && pem.ends_with("\n-----END PUBLIC KEY-----\n")
        );
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(pem.lines().all(|l| l.len() <= 64));
        let std = base64::engine::general_purpose::STANDARD;
        assert_eq!(
            std.decode(body).unwrap(),
            std.decode(b64.as_str().unwrap()).unwrap()
        );
    }
    assert_eq!(keys::convert("").unwrap().pems.len(), 0);
}

#[test]
fn verification_keys_keylime_refuses_or_skips() {
    let refused_keys = |s: &str| keys::convert(s).unwrap_err();
    assert!(refused_keys("{").contains("not JSON"));
    assert!(refused_keys(&serde_json::to_string(KEYLIME_KEYS).unwrap())
        .contains("a string (encoded twice?)"));
    assert!(refused_keys("[]").contains("an array"));
    assert!(refused_keys(r#"{"pubkeys": []}"#).contains("`keyids` is missing"));
    assert!(refused_keys(r#"{"keyids": [], "pubkeys": {}}"#).contains("`pubkeys` is not an array"));
    assert!(refused_keys(r#"{"keyids": ["1"], "pubkeys": []}"#).contains("`keyids[0]` is \"1\""));
    assert!(
        refused_keys(r#"{"keyids": [], "pubkeys": [1]}"#).contains("`pubkeys[0]` is not a string")
    );
    assert!(
        refused_keys(r#"{"keyids": [], "pubkeys": [], "meta": {"version": 0}}"#).contains("`meta`")
    );
    assert!(refused_keys(r#"{"keyids": [], "pubkeys": ["not base64!"]}"#).contains("not base64"));
    // Through convert, the error names the field.
    let e = refused_policy(&policy(json!({"verification-keys": "{"})));
    assert!(e.starts_with("verification-keys: not JSON"), "{e}");

    // A wrong keyid is said; a key that is neither RSA nor EC is skipped, as Keylime does.
    let wrong = KEYLIME_KEYS.replace("4081397027", "1");
    let k = keys::convert(&wrong).unwrap();
    assert_eq!(k.pems.len(), 1);
    assert!(
        k.warnings[0].contains("listed with keyid 0x00000001, but its own keyid is 0xf3452d23"),
        "{:?}",
        k.warnings
    );
    let ed25519 = "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=";
    let k = keys::convert(&format!(
        r#"{{"keyids": [], "pubkeys": ["{ed25519}", "AAAA"]}}"#
    ))
    .unwrap();
    assert!(k.pems.is_empty());
    assert!(
        k.warnings[0]
            .contains("pubkeys[0] is skipped: algorithm 1.3.101.112 is neither RSA nor EC"),
        "{:?}",
        k.warnings
    );
    assert!(
        k.warnings[1].contains("pubkeys[1] is skipped: not a DER SubjectPublicKeyInfo"),
        "{:?}",
        k.warnings
    );
}

// --- Excludes -----------------------------------------------------------------

/// Matches as the verifier matches: anchored at both ends.
fn assay_matches(assay: &str, path: &str) -> bool {
    regex::Regex::new(&format!("^(?:{assay})$"))
        .unwrap()
        .is_match(path)
}

/// Each Keylime pattern, with paths Python's `re.match` matches and paths it
/// does not (each checked with Python 3.11's `re` on the joined form
/// `(pattern)`; tests/tests/keylime_import.rs checks a set of excludes
/// against Keylime itself).
#[test]
fn excludes_keep_pythons_meaning() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "/tmp/.*",
            &["/tmp/", "/tmp/a/b", "/tmp/a\nb"],
            &["/tmp", "/tm/p", "x/tmp/"],
        ),
        (
            "/var/log",
            &["/var/log", "/var/logger", "/var/log/x"],
            &["/var/lo", "/x/var/log"],
        ),
        ("/tmp/*", &["/tmp", "/tmpfoo", "/tmp///x"], &["/tm"]),
        (
            "^/proc/[0-9]+/",
            &["/proc/1/", "/proc/12/x"],
            &["/proc//", "/proc/a/"],
        ),
        (
            r".*\.pyc$",
            &["/a.pyc", "/a.pyc\n"],
            &["/a.pyc.bak", "/a.pyc\n\n", "/apyc"],
        ),
        ("a$|b", &["a", "a\n", "bzz"], &["ab", "a\nb"]),
        ("(a$)", &["a", "a\n"], &["ax"]),
        ("(?m:a$)x", &[], &["ax", "a\nx"]),
        ("(?m:a$\n)x", &["a\nx", "a\nxz"], &["ax"]),
        ("(?m:^b)", &["b"], &["ab", "a\nb"]),
        (r"\Aab\Z", &["ab"], &["ab\n", "abc"]),
        (
            "(?i:/media/usb)",
            &["/MEDIA/Usb", "/media/usb/x"],
            &["/media/us"],
        ),
        ("(?s:a.b)", &["a\nb"], &["ab"]),
        ("a.b", &["axb"], &["a\nb"]),
        (r"/run/\d+", &["/run/1", "/run/\u{663}"], &["/run/x"]),
        (
            r"\s",
            &[" ", "\t", "\u{1c}", "\u{1f}", "\u{a0}", "\u{3000}"],
            &["x", "\u{180e}"],
        ),
        (r"\S", &["x"], &[" ", "\u{1c}"]),
        (
            r"\w",
            &["a", "_", "é", "\u{b2}", "\u{2167}"],
            &["-", "\u{301}", "\u{203f}"],
        ),
        (r"\W", &["-", "\u{301}"], &["a", "\u{b2}"]),
        (r"[\w.-]+\.tmp$", &["a_b-1.tmp", "é.tmp"], &["a+b.tmp"]),
        (r"[^\W\d]x", &["ax"], &["1x", "-x"]),
        (r"[\s]x", &["\u{1d}x"], &["ax"]),
        (r"[\S]", &["a"], &[" ", "\u{1e}"]),
        ("[]a]", &["]", "a"], &["b"]),
        ("[^]a]", &["b"], &["]", "a"]),
        ("[a-]", &["a", "-"], &["b"]),
        ("[-a]", &["a", "-"], &["b"]),
        ("[a&&b]", &["a", "&", "b"], &["c"]),
        ("[a~~b]", &["~"], &["c"]),
        ("[[:alpha:]]", &["a]", "[]", ":]"], &["a", "b]"]),
        (r"[\]\\]", &["]", "\\"], &["a"]),
        (r"[\x41-\x43]", &["B"], &["D"]),
        (r"[\101]", &["A"], &["B"]),
        (r"[\b]", &["\u{8}"], &["b"]),
        (r"\bfoo\b", &["foo", "foo bar"], &["foobar"]),
        (r"a\Bb", &["ab"], &["a b"]),
        (r"\B|x?", &["", "-"], &[]),
        (r"-\B", &["-", "--"], &[]),
        ("x{,2}y", &["y", "xy", "xxy"], &["xxxy"]),
        ("x{2,}", &["xx", "xxx"], &["x"]),
        ("x{2}", &["xx"], &["x"]),
        ("x{,}y", &["y", "xxxxy"], &["x"]),
        ("x{}", &["x{}"], &["x"]),
        ("x{a}", &["x{a}"], &["x"]),
        ("x{1, 2}", &["x{1, 2}"], &["x"]),
        ("a{", &["a{"], &["a"]),
        ("a}", &["a}"], &["a"]),
        ("a]", &["a]"], &["a"]),
        ("x*?y", &["y", "xxy"], &["x"]),
        (r"\x41\u0042\U00000043", &["ABC"], &["AB"]),
        (r"\101\0\01", &["A\u{0}\u{1}"], &["A"]),
        (r"\1234", &["\u{53}4"], &["S"]),
        (r"\a\f\n\r\t\v", &["\u{7}\u{c}\n\r\t\u{b}"], &["a"]),
        (
            r"\.\+\*\?\(\)\|\[\]\{\}\^\$\#\&\~\-\ \/",
            &[".+*?()|[]{}^$#&~- /"],
            &["x"],
        ),
        (r"\é", &["é"], &["e"]),
        ("(?P<name>a)b(?:c)", &["abc"], &["ab"]),
        ("a(?#comment)*", &["", "aaa", "b"], &[]),
        ("(?i-s:A.)", &["ax"], &["a\n"]),
        ("(?s-i:A.)", &["A\n"], &["a\n"]),
        ("", &["", "/anything"], &[]),
        ("|x", &["", "y"], &[]),
        ("()", &["x"], &[]),
        ("#x", &["#x"], &["x"]),
        ("/ünï/文", &["/ünï/文件"], &["/uni/"]),
        ("a\nb", &["a\nb"], &["ab"]),
    ];
    for (pattern, yes, no) in cases {
        let t = pyregex::translate(pattern).unwrap_or_else(|e| panic!("{pattern:?}: {e}"));
        for p in *yes {
            assert!(
                assay_matches(&t.regex, p),
                "{pattern:?} → {:?} should match {p:?}",
                t.regex
            );
        }
        for p in *no {
            assert!(
                !assay_matches(&t.regex, p),
                "{pattern:?} → {:?} should not match {p:?}",
                t.regex
            );
        }
    }
}

#[test]
fn excludes_python_or_the_regex_crate_cannot_share_are_refused() {
    let cases: &[(&str, &str)] = &[
        (
            "/tmp/(?=x)",
            "lookahead at position 5: the regex crate has no lookaround",
        ),
        ("/tmp/(?!x)", "lookahead"),
        ("(?<=/)tmp", "lookbehind at position 0"),
        ("(?<!/)tmp", "lookbehind"),
        ("(?>a)", "atomic group"),
        ("a*+", "possessive quantifier"),
        ("a{1,2}+", "possessive quantifier"),
        ("(a)?(?(1)b|c)", "conditional group"),
        ("(a)\\1", "backreference at position 3"),
        ("(?P<n>a)(?P=n)", "backreference (?P=…)"),
        ("\\N{DIGIT ONE}", "named character"),
        ("(?i)/tmp", "global inline flags (?i)"),
        ("/a(?s)", "global inline flags"),
        ("(?x:a b)", "flag x"),
        ("(?a:\\w)", "flag a"),
        ("(?u:a)", "flag u"),
        ("(?L:a)", "flag L"),
        ("(?-:a)", "missing flag"),
        ("(?i-i:a)", "flag i turned on and off"),
        ("(?z)", "unknown extension"),
        ("(?<n>a)", "unknown extension"),
        ("(?P>n)", "unknown extension (?P"),
        ("(?P<1x>a)", "is not an ASCII identifier"),
        ("(?P<é>a)", "is not an ASCII identifier"),
        ("(?P<n", "unterminated name"),
        ("(a", "missing ), unterminated subpattern"),
        ("a)", "unbalanced parenthesis"),
        ("a)|(b", "unbalanced parenthesis"),
        ("[a", "unterminated character set"),
        ("[]", "unterminated character set"),
        ("[z-a]", "bad character range"),
        ("[\\d-z]", "bad character range"),
        ("[a--b]", "bad character range"),
        ("[a-\\w]", "bad character range"),
        ("*a", "nothing to repeat at position 0"),
        ("a|*", "nothing to repeat"),
        ("(*)", "nothing to repeat"),
        ("^*", "nothing to repeat"),
        ("\\b+", "nothing to repeat"),
        ("a$*", "nothing to repeat"),
        ("{1}", "nothing to repeat"),
        ("a**", "multiple repeat"),
        ("a{2}{3}", "multiple repeat"),
        ("a*??", "multiple repeat"),
        ("x{3,2}", "min repeat greater than max repeat"),
        ("x{99999999999}", "too large"),
        ("a$b", "`$` is followed by more pattern"),
        ("(a$)b", "`$` is followed by more pattern"),
        ("(a$|c)b", "`$` is followed by more pattern"),
        ("(a$)*", "a group ending in `$` is repeated"),
        ("\\q", "bad escape \\q"),
        ("\\z", "bad escape \\z"),
        ("[\\A]", "bad escape \\A"),
        ("[\\8]", "bad escape \\8"),
        ("\\", "bad escape (end of pattern)"),
        ("\\x4", "incomplete escape"),
        ("\\u12", "incomplete escape"),
        ("\\ud800", "lone surrogate"),
        ("\\U00110000", "bad escape"),
        ("\\777", "above \\377"),
        ("(?#never closed", "unterminated comment"),
        ("\\B", "would match the empty path"),
        ("x*\\B", "would match the empty path"),
    ];
    for (pattern, says) in cases {
        match pyregex::translate(pattern) {
            Ok(t) => panic!("{pattern:?} accepted as {:?}", t.regex),
            Err(e) => assert!(e.contains(says), "{pattern:?}: {e}"),
        }
    }
    let deep = format!("{}a{}", "(".repeat(101), ")".repeat(101));
    assert!(pyregex::translate(&deep)
        .unwrap_err()
        .contains("nested deeper than 100"));
    let e = refused_policy(&policy(json!({"excludes": ["/ok", "/tmp/(?=x)"]})));
    assert!(
        e.starts_with("excludes[1] \"/tmp/(?=x)\": lookahead"),
        "{e}"
    );
}

#[test]
fn excludes_are_written_with_their_keylime_form_and_checked_together() {
    let c = ok(&policy(
        json!({"excludes": ["/tmp/.*", "it's", r"\bx", "(?i:y)", "a*", "/p\nq"]}),
    ));
    let t = table(&c);
    let ex: Vec<&str> = t["ima"]["excludes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ex[0], "(?:/tmp/.*)(?s:.*)");
    assert_eq!(ex[1], "(?:it's)(?s:.*)");
    assert!(
        c.toml
            .contains("    # Keylime excludes[0]: \"/tmp/.*\"\n    '(?:/tmp/.*)(?s:.*)',\n"),
        "{}",
        c.toml
    );
    assert!(
        c.toml.contains("# Keylime excludes[5]: \"/p\\nq\"\n"),
        "{}",
        c.toml
    );
    assert!(warned(&c, "excludes [2] use \\b or \\B"));
    assert!(warned(&c, "excludes [3] ignore case"));
    assert!(warned(&c, "excludes[4] \"a*\" matches an empty prefix"));
    assert_eq!(c.excludes, 6);
    let p = assay_core::policy::Policy::parse("p.toml", &c.toml).unwrap();
    assert!(p.ima().unwrap().excluded("/tmp/x"));
    assert!(p
        .ima()
        .unwrap()
        .excluded("/anything: a* matches the empty prefix"));
    // Python refuses a group name twice in the joined pattern.
    let e = refused_policy(&policy(json!({"excludes": ["(?P<a>x)", "y", "(?P<a>z)"]})));
    assert!(
        e.contains("excludes[2] \"(?P<a>z)\": group name \"a\" is also used by excludes[0]"),
        "{e}"
    );
    // What the regex crate cannot build within the verifier's size limit.
    let e = refused_policy(&policy(
        json!({"excludes": [r"\w{1000}{1000}".replace("}{", "}(?:){")]}),
    ));
    assert!(e.contains("does not compile with the regex crate"), "{e}");
}

// --- Size ---------------------------------------------------------------------

/// Linear in the input: 200,000 paths convert in well under the time a
/// quadratic step would take, and every one is written.
#[test]
fn large_policies_convert_in_one_pass() {
    let n = 200_000;
    let mut text =
        String::from(r#"{"meta": {"version": 1, "generator": 1}, "release": 0, "digests": {"#);
    for i in 0..n {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&format!(
            "\"/usr/lib/file-{i:07}\": [\"{}\"]",
            hex_of((i % 251) as u8, 32)
        ));
    }
    text.push_str(r#"}, "excludes": [], "keyrings": {}, "ima": {"ignored_keyrings": [], "log_hash_alg": "sha1", "dm_policy": null}, "ima-buf": {}, "verification-keys": ""}"#);
    let start = std::time::Instant::now();
    let c = convert_bytes(text.as_bytes()).unwrap();
    let took = start.elapsed();
    assert_eq!(c.paths, n);
    assert_eq!(c.toml.matches("\"/usr/lib/file-").count(), n);
    assert!(took < std::time::Duration::from_secs(20), "{took:?}");
}

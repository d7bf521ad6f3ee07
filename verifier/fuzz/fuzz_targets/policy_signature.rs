//! Policy signatures (minisign): a public key file's text and a `.minisig`
//! text, parsed and checked over a policy text. Input: u16 LE key length, the
//! key text (length 0: a fixed operator key), u16 LE signature length, the
//! signature text, then the signed text.
//!
//! Checked besides "no panic, no hang, bounded memory": under the fixed key
//! (made with `minisign -G`, its secret thrown away), only the one text it
//! signed verifies, with its trusted comment (no forgery, no malleability of
//! the covered parts).
#![no_main]

use assay_verifier::policy_signature::PolicyKeys;
use libfuzzer_sys::fuzz_target;

const FIXED_KEY: &str = "untrusted comment: minisign public key 9189814EF544FA77\n\
                         RWR3+kT1ToGJkTCOICH7tLrxBkkMLxmnvOeCTpRliucl+uf7qvnugjsp\n";
/// What the fixed key's secret signed (`minisign -S -t "ticket 42"`); the
/// seed `seeds/policy_signature/fixed_key` holds it with its signature.
const SIGNED: &[u8] = b"schema = 0\nname = \"fuzz\"\n[pcrs.sha256]\n0 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n";

fn take<'a>(data: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, rest) = data.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_le_bytes(*len));
    let (part, rest) = rest.split_at_checked(len)?;
    *data = rest;
    Some(part)
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let (Some(key), Some(sig)) = (take(&mut data), take(&mut data)) else {
        return;
    };
    let text = data;
    let Ok(sig) = std::str::from_utf8(sig) else {
        return;
    };
    if key.is_empty() {
        let keys = PolicyKeys::parse(FIXED_KEY).expect("the fixed key parses");
        if let Ok(v) = keys.verify(text, sig) {
            assert_eq!(text, SIGNED, "a text the key never signed verified");
            assert_eq!(v.trusted_comment, "ticket 42");
        }
    } else if let Ok(key) = std::str::from_utf8(key) {
        if let Ok(keys) = PolicyKeys::parse(key) {
            assert_eq!(keys.key_ids().len(), 1);
            let _ = keys.verify(text, sig);
        }
    }
});

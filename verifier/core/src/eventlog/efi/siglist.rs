//! `EFI_SIGNATURE_LIST` sequences (PK, KEK, db, dbx, MokList) and single
//! `EFI_SIGNATURE_DATA` entries (UEFI 2.10 §32.4.1 "Signature Database").
//!
//! ```text
//! EFI_SIGNATURE_LIST { EFI_GUID SignatureType; UINT32 SignatureListSize;
//!                      UINT32 SignatureHeaderSize; UINT32 SignatureSize;
//!                      UINT8 SignatureHeader[SignatureHeaderSize];
//!                      EFI_SIGNATURE_DATA Signatures[...] }   // each SignatureSize bytes
//! EFI_SIGNATURE_DATA { EFI_GUID SignatureOwner; UINT8 SignatureData[...] }
//! ```
//!
//! X.509 entries are parsed (subject, issuer, serial) and fingerprinted
//! (SHA-256 of the DER); a certificate x509-parser cannot read keeps its
//! fingerprint and says why, so one odd entry does not hide the rest of a db.

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::wire::{ser_hex, Cursor, Guid};
use super::EfiError;

/// `EFI_CERT_X509_GUID`: each signature is one DER certificate.
pub const EFI_CERT_X509_GUID: Guid = Guid::new(
    0xa5c0_59a1,
    0x94e4,
    0x4aa7,
    [0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0, 0x72],
);
/// `EFI_CERT_SHA256_GUID`: each signature is a SHA-256 image digest.
pub const EFI_CERT_SHA256_GUID: Guid = Guid::new(
    0xc1c4_1626,
    0x504c,
    0x4092,
    [0xac, 0xa9, 0x41, 0xf9, 0x36, 0x93, 0x43, 0x28],
);

/// Signature types by their UEFI names (§32.4.1), for display.
const SIGNATURE_TYPES: &[(Guid, &str)] = &[
    (EFI_CERT_X509_GUID, "EFI_CERT_X509_GUID"),
    (EFI_CERT_SHA256_GUID, "EFI_CERT_SHA256_GUID"),
    (
        Guid::new(
            0x826c_a512,
            0xcf10,
            0x4ac9,
            [0xb1, 0x87, 0xbe, 0x01, 0x49, 0x66, 0x31, 0xbd],
        ),
        "EFI_CERT_SHA1_GUID",
    ),
    (
        Guid::new(
            0x0b6e_5233,
            0xa65c,
            0x44c9,
            [0x94, 0x07, 0xd9, 0xab, 0x83, 0xbf, 0xc8, 0xbd],
        ),
        "EFI_CERT_SHA224_GUID",
    ),
    (
        Guid::new(
            0xff3e_5307,
            0x9fd0,
            0x48c9,
            [0x85, 0xf1, 0x8a, 0xd5, 0x6c, 0x70, 0x1e, 0x01],
        ),
        "EFI_CERT_SHA384_GUID",
    ),
    (
        Guid::new(
            0x093e_0fae,
            0xa6c4,
            0x4f50,
            [0x9f, 0x1b, 0xd4, 0x1e, 0x2b, 0x89, 0xc1, 0x9a],
        ),
        "EFI_CERT_SHA512_GUID",
    ),
    (
        Guid::new(
            0x3c57_66e8,
            0x269c,
            0x4e34,
            [0xaa, 0x14, 0xed, 0x77, 0x6e, 0x85, 0xb3, 0xb6],
        ),
        "EFI_CERT_RSA2048_GUID",
    ),
    (
        Guid::new(
            0xe2b3_6190,
            0x879b,
            0x4a3d,
            [0xad, 0x8d, 0xf2, 0xe7, 0xbb, 0xa3, 0x27, 0x84],
        ),
        "EFI_CERT_RSA2048_SHA256_GUID",
    ),
    (
        Guid::new(
            0x67f8_444f,
            0x8743,
            0x48f1,
            [0xa3, 0x28, 0x1e, 0xaa, 0xb8, 0x73, 0x60, 0x80],
        ),
        "EFI_CERT_RSA2048_SHA1_GUID",
    ),
    (
        Guid::new(
            0x3bd2_a492,
            0x96c0,
            0x4079,
            [0xb4, 0x20, 0xfc, 0xf9, 0x8e, 0xf1, 0x03, 0xed],
        ),
        "EFI_CERT_X509_SHA256_GUID",
    ),
    (
        Guid::new(
            0x7076_876e,
            0x80c2,
            0x4ee6,
            [0xaa, 0xd2, 0x28, 0xb3, 0x49, 0xa6, 0x86, 0x5b],
        ),
        "EFI_CERT_X509_SHA384_GUID",
    ),
    (
        Guid::new(
            0x446d_bf63,
            0x2502,
            0x4cda,
            [0xbc, 0xfa, 0x24, 0x65, 0xd2, 0xb0, 0xfe, 0x9d],
        ),
        "EFI_CERT_X509_SHA512_GUID",
    ),
];

const LIST_HEADER_LEN: u32 = 28;
const OWNER_LEN: u32 = 16;
/// Largest vendor `SignatureHeader` accepted (all defined types have none).
pub const MAX_SIGNATURE_HEADER: usize = 4096;
/// Largest single signature (owner + certificate) accepted.
pub const MAX_SIGNATURE_SIZE: u32 = 1 << 20;
/// Most signatures accepted across the lists of one variable (dbx has ~500).
pub const MAX_SIGNATURES: usize = 100_000;
/// Most lists accepted in one variable.
pub const MAX_LISTS: usize = 4096;

/// One `EFI_SIGNATURE_LIST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureList {
    pub signature_type: Guid,
    /// The UEFI name of `signature_type`, when it is a defined one.
    pub type_name: Option<&'static str>,
    /// The vendor-specific `SignatureHeader` (empty for every defined type).
    #[serde(serialize_with = "ser_hex", skip_serializing_if = "Vec::is_empty")]
    pub header: Vec<u8>,
    pub signature_size: u32,
    pub signatures: Vec<SignatureEntry>,
}

/// One `EFI_SIGNATURE_DATA`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureEntry {
    pub owner: Guid,
    pub value: SignatureValue,
}

/// What one signature holds, by the list's `SignatureType`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SignatureValue {
    /// `EFI_CERT_X509_GUID`.
    X509(Certificate),
    /// `EFI_CERT_SHA256_GUID`.
    Sha256 {
        #[serde(serialize_with = "ser_hex")]
        digest: [u8; 32],
    },
    /// Any other type, kept as it is (see the list's `signature_type`).
    Other {
        #[serde(serialize_with = "ser_hex")]
        data: Vec<u8>,
    },
}

/// An X.509 certificate from a signature database or an authority event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Certificate {
    /// SHA-256 of the DER bytes (the certificate's fingerprint).
    #[serde(serialize_with = "ser_hex")]
    pub sha256: [u8; 32],
    /// Subject and issuer as RFC 4514-style text (`C=US, O=Microsoft Corporation, CN=...`).
    pub subject: Option<String>,
    pub issuer: Option<String>,
    /// Serial number in lowercase hex, without leading zero bytes.
    pub serial: Option<String>,
    /// Why the DER could not be read as a certificate, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<String>,
    /// The DER bytes (not serialized: they are in the event data already).
    #[serde(skip)]
    pub der: Vec<u8>,
}

impl Certificate {
    /// Reads a DER certificate; never fails (see [`Certificate::parse_error`]).
    pub fn from_der(der: &[u8]) -> Self {
        let sha256: [u8; 32] = Sha256::digest(der).into();
        let mut out = Certificate {
            sha256,
            subject: None,
            issuer: None,
            serial: None,
            parse_error: None,
            der: der.to_vec(),
        };
        match x509_parser::parse_x509_certificate(der) {
            Ok((rest, cert)) => {
                out.subject = Some(cert.subject().to_string());
                out.issuer = Some(cert.issuer().to_string());
                out.serial = Some(serial_hex(cert.raw_serial()));
                if !rest.is_empty() {
                    out.parse_error = Some(format!("{} bytes after the certificate", rest.len()));
                }
            }
            Err(e) => out.parse_error = Some(format!("not an X.509 certificate: {e}")),
        }
        out
    }

    /// The certificate if `der` is exactly one well-formed certificate.
    pub(crate) fn strict(der: &[u8]) -> Option<Self> {
        let cert = Self::from_der(der);
        (cert.parse_error.is_none()).then_some(cert)
    }
}

/// A DER INTEGER's content bytes as lowercase hex without the sign-padding
/// zero bytes (`fef588e8f396c0f1`, as `openssl x509 -serial` prints it).
fn serial_hex(raw: &[u8]) -> String {
    let first = raw
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode(raw.get(first..).unwrap_or_default())
}

/// The UEFI name of a signature type, if it is a defined one.
pub fn signature_type_name(guid: &Guid) -> Option<&'static str> {
    SIGNATURE_TYPES
        .iter()
        .find(|(g, _)| g == guid)
        .map(|(_, name)| *name)
}

/// Parses a variable's data as a sequence of `EFI_SIGNATURE_LIST`s (empty data
/// is an empty database).
///
/// Checked: `SignatureListSize` covers the 28-byte header and the vendor
/// header and stays within the data; `SignatureSize` holds at least the owner
/// GUID and divides the rest exactly; SHA-256 entries are 16 + 32 bytes.
pub fn parse_signature_lists(data: &[u8]) -> Result<Vec<SignatureList>, EfiError> {
    let mut cur = Cursor::new(data, "EFI_SIGNATURE_LIST");
    let mut lists = Vec::new();
    let mut total = 0usize;
    while cur.left() > 0 {
        let index = lists.len();
        if index >= MAX_LISTS {
            return Err(cur.too_large(
                "lists",
                (MAX_LISTS as u64).saturating_add(1),
                MAX_LISTS as u64,
            ));
        }
        let list = read_list(&mut cur, &mut total)
            .map_err(|e| e.within(format!("signature list {index}")))?;
        lists.push(list);
    }
    Ok(lists)
}

fn read_list(cur: &mut Cursor<'_>, total: &mut usize) -> Result<SignatureList, EfiError> {
    let signature_type = cur.guid("SignatureType")?;
    let list_size = cur.u32("SignatureListSize")?;
    let header_size = cur.u32("SignatureHeaderSize")?;
    let signature_size = cur.u32("SignatureSize")?;
    let body_len = list_size.checked_sub(LIST_HEADER_LEN).ok_or_else(|| {
        cur.invalid(
            "SignatureListSize",
            format!("{list_size} is smaller than the {LIST_HEADER_LEN}-byte list header"),
        )
    })?;
    let body = cur.take_len(u64::from(body_len), usize::MAX, "SignatureListSize")?;
    let mut body = Cursor::new(body, "EFI_SIGNATURE_LIST");
    let header = body
        .take_len(
            u64::from(header_size),
            MAX_SIGNATURE_HEADER,
            "SignatureHeaderSize",
        )?
        .to_vec();
    if signature_size < OWNER_LEN {
        return Err(body.invalid(
            "SignatureSize",
            format!("{signature_size} cannot hold the {OWNER_LEN}-byte SignatureOwner"),
        ));
    }
    if signature_size > MAX_SIGNATURE_SIZE {
        return Err(body.too_large(
            "SignatureSize",
            u64::from(signature_size),
            u64::from(MAX_SIGNATURE_SIZE),
        ));
    }
    let step = signature_size as usize;
    if !body.left().is_multiple_of(step) {
        return Err(body.invalid(
            "SignatureSize",
            format!(
                "the {} bytes after the header are not a whole number of {signature_size}-byte signatures",
                body.left()
            ),
        ));
    }
    if signature_type == EFI_CERT_SHA256_GUID && signature_size != OWNER_LEN + 32 {
        return Err(body.invalid(
            "SignatureSize",
            format!(
                "EFI_CERT_SHA256 signatures are 48 bytes (owner + SHA-256), not {signature_size}"
            ),
        ));
    }
    let mut signatures = Vec::new();
    while body.left() > 0 {
        if *total >= MAX_SIGNATURES {
            return Err(body.too_large(
                "Signatures",
                (*total as u64).saturating_add(1),
                MAX_SIGNATURES as u64,
            ));
        }
        let owner = body.guid("SignatureOwner")?;
        let data = body.take(step - OWNER_LEN as usize, "SignatureData")?;
        signatures.push(SignatureEntry {
            owner,
            value: signature_value(&signature_type, data),
        });
        *total += 1;
    }
    Ok(SignatureList {
        signature_type,
        type_name: signature_type_name(&signature_type),
        header,
        signature_size,
        signatures,
    })
}

fn signature_value(signature_type: &Guid, data: &[u8]) -> SignatureValue {
    if *signature_type == EFI_CERT_X509_GUID {
        return SignatureValue::X509(Certificate::from_der(data));
    }
    if *signature_type == EFI_CERT_SHA256_GUID {
        if let Ok(digest) = <[u8; 32]>::try_from(data) {
            return SignatureValue::Sha256 { digest };
        }
    }
    SignatureValue::Other {
        data: data.to_vec(),
    }
}

/// Reads one `EFI_SIGNATURE_DATA` that stands alone (as in
/// `EV_EFI_VARIABLE_AUTHORITY` events): the owner GUID, then either exactly one
/// DER certificate or a SHA-256 digest. `None` for anything else.
pub fn parse_signature_data(data: &[u8]) -> Option<SignatureEntry> {
    let (owner, rest) = data.split_first_chunk::<16>()?;
    let value = if let Ok(digest) = <[u8; 32]>::try_from(rest) {
        SignatureValue::Sha256 { digest }
    } else {
        SignatureValue::X509(Certificate::strict(rest)?)
    };
    Some(SignatureEntry {
        owner: Guid(*owner),
        value,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    /// A self-signed certificate from rcgen, DER.
    pub(crate) fn test_cert_der(cn: &str) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Assay Test");
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    pub(crate) const OWNER: Guid = Guid::new(0x7762_3a1b, 1, 2, [3, 4, 5, 6, 7, 8, 9, 10]);

    pub(crate) fn list(
        signature_type: Guid,
        header: &[u8],
        size: u32,
        entries: &[&[u8]],
    ) -> Vec<u8> {
        let body: usize = entries.iter().map(|e| 16 + e.len()).sum();
        let mut out = signature_type.0.to_vec();
        out.extend((28 + header.len() as u32 + body as u32).to_le_bytes());
        out.extend((header.len() as u32).to_le_bytes());
        out.extend(size.to_le_bytes());
        out.extend(header);
        for e in entries {
            out.extend(OWNER.0);
            out.extend(*e);
        }
        out
    }

    #[test]
    fn x509_and_sha256_lists() {
        let der = test_cert_der("Test db CA");
        let mut data = list(EFI_CERT_X509_GUID, &[], 16 + der.len() as u32, &[&der]);
        data.extend(list(
            EFI_CERT_SHA256_GUID,
            &[],
            48,
            &[&[0xaa; 32], &[0xbb; 32]],
        ));
        let lists = parse_signature_lists(&data).unwrap();
        assert_eq!(lists.len(), 2);
        assert_eq!(lists[0].type_name, Some("EFI_CERT_X509_GUID"));
        let SignatureValue::X509(cert) = &lists[0].signatures[0].value else {
            panic!()
        };
        assert_eq!(cert.subject.as_deref(), Some("CN=Test db CA, O=Assay Test"));
        assert_eq!(cert.issuer, cert.subject);
        assert!(cert.parse_error.is_none());
        assert_eq!(cert.sha256, <[u8; 32]>::from(Sha256::digest(&der)));
        assert_eq!(lists[0].signatures[0].owner, OWNER);
        assert_eq!(lists[1].signatures.len(), 2);
        assert_eq!(
            lists[1].signatures[1].value,
            SignatureValue::Sha256 { digest: [0xbb; 32] }
        );
        let json = serde_json::to_value(&lists).unwrap();
        assert_eq!(json[1]["signatures"][0]["value"]["digest"], "aa".repeat(32));
        assert_eq!(json[0]["signatures"][0]["owner"], OWNER.to_string());
        assert!(json[0]["signatures"][0]["value"].get("der").is_none());
        assert!(parse_signature_lists(&[]).unwrap().is_empty());
    }

    #[test]
    fn vendor_header_and_unknown_types_are_kept() {
        let rsa = Guid::new(
            0x3c57_66e8,
            0x269c,
            0x4e34,
            [0xaa, 0x14, 0xed, 0x77, 0x6e, 0x85, 0xb3, 0xb6],
        );
        let data = list(rsa, &[1, 2, 3], 16 + 4, &[&[9, 9, 9, 9]]);
        let lists = parse_signature_lists(&data).unwrap();
        assert_eq!(lists[0].header, vec![1, 2, 3]);
        assert_eq!(lists[0].type_name, Some("EFI_CERT_RSA2048_GUID"));
        assert_eq!(
            lists[0].signatures[0].value,
            SignatureValue::Other { data: vec![9; 4] }
        );
    }

    #[test]
    fn unreadable_certificate_keeps_its_fingerprint() {
        let data = list(EFI_CERT_X509_GUID, &[], 16 + 3, &[&[0x30, 0x01, 0x00]]);
        let lists = parse_signature_lists(&data).unwrap();
        let SignatureValue::X509(cert) = &lists[0].signatures[0].value else {
            panic!()
        };
        assert!(cert.subject.is_none());
        assert!(cert
            .parse_error
            .as_deref()
            .unwrap()
            .starts_with("not an X.509"));
        assert_eq!(
            cert.sha256,
            <[u8; 32]>::from(Sha256::digest([0x30, 0x01, 0x00]))
        );
    }

    #[test]
    fn truncated_lists_fail_at_every_offset() {
        let data = list(EFI_CERT_SHA256_GUID, &[], 48, &[&[0xaa; 32], &[0xbb; 32]]);
        for len in 1..data.len() {
            assert!(parse_signature_lists(&data[..len]).is_err(), "{len}");
        }
    }

    fn with_sizes(list_size: u32, header_size: u32, signature_size: u32, total: usize) -> Vec<u8> {
        let mut out = EFI_CERT_SHA256_GUID.0.to_vec();
        out.extend(list_size.to_le_bytes());
        out.extend(header_size.to_le_bytes());
        out.extend(signature_size.to_le_bytes());
        out.resize(total, 0);
        out
    }

    #[test]
    fn inconsistent_sizes_are_rejected() {
        let err = |d: &[u8]| parse_signature_lists(d).unwrap_err().to_string();
        // ListSize smaller than its own header.
        assert!(err(&with_sizes(27, 0, 48, 28)).contains("SignatureListSize: 27 is smaller"));
        // ListSize past the end of the data.
        assert!(err(&with_sizes(28 + 48, 0, 48, 28 + 47)).contains("truncated"));
        assert!(err(&with_sizes(u32::MAX, 0, 48, 28)).contains("truncated"));
        // Header larger than the list, or than the maximum.
        assert!(err(&with_sizes(28 + 48, 49, 48, 28 + 48)).contains("SignatureHeaderSize"));
        assert!(err(&with_sizes(28 + 8000, 5000, 48, 28 + 8000)).contains("exceeds the maximum"));
        // SignatureSize too small (incl. zero: no division by zero) or not dividing the body.
        assert!(err(&with_sizes(28 + 48, 0, 0, 28 + 48)).contains("cannot hold"));
        assert!(err(&with_sizes(28 + 48, 0, 15, 28 + 48)).contains("cannot hold"));
        assert!(err(&with_sizes(28 + 96, 0, 40, 28 + 96)).contains("whole number"));
        assert!(err(&with_sizes(28 + 96, 0, u32::MAX, 28 + 96)).contains("exceeds the maximum"));
        // SHA-256 entries of the wrong size.
        assert!(err(&with_sizes(28 + 96, 0, 32, 28 + 96)).contains("48 bytes"));
        // Thousands of empty lists are refused.
        let empties = with_sizes(28, 0, 48, 28).repeat(MAX_LISTS + 1);
        assert!(err(&empties).contains("lists: 4097 exceeds the maximum of 4096"));
        // A header-only list is an empty list.
        assert!(
            parse_signature_lists(&with_sizes(28, 0, 48, 28)).unwrap()[0]
                .signatures
                .is_empty()
        );
        // The error says which list.
        let mut two = with_sizes(28, 0, 48, 28);
        two.extend(with_sizes(27, 0, 48, 28));
        assert!(err(&two).starts_with("signature list 1: "));
    }

    #[test]
    fn serials_drop_sign_padding() {
        assert_eq!(serial_hex(&[0x00, 0xfe, 0xf5]), "fef5");
        assert_eq!(serial_hex(&[0x61, 0x08]), "6108");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[]), "");
    }

    #[test]
    fn standalone_signature_data() {
        let der = test_cert_der("Authority");
        let mut data = OWNER.0.to_vec();
        data.extend(&der);
        let entry = parse_signature_data(&data).unwrap();
        assert_eq!(entry.owner, OWNER);
        assert!(matches!(entry.value, SignatureValue::X509(_)));
        let mut hash = OWNER.0.to_vec();
        hash.extend([7; 32]);
        assert_eq!(
            parse_signature_data(&hash).unwrap().value,
            SignatureValue::Sha256 { digest: [7; 32] }
        );
        assert!(parse_signature_data(&der).is_none(), "no owner GUID");
        assert!(parse_signature_data(&data[..20]).is_none());
        assert!(parse_signature_data(&[]).is_none());
        data.push(0);
        assert!(
            parse_signature_data(&data).is_none(),
            "trailing byte after the DER"
        );
    }
}

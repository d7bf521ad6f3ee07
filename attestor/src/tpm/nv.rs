//! EK certificates from TPM NV storage (TCG EK Credential Profile indices).

use tss_esapi::abstraction::nv;
use tss_esapi::constants::CapabilityType;
use tss_esapi::handles::{NvIndexTpmHandle, TpmHandle};
use tss_esapi::interface_types::resource_handles::NvAuth;
use tss_esapi::structures::CapabilityData;
use tss_esapi::Context;

use super::TpmError;

/// The EK certificate chain range (TCG TPM v2.0 Provisioning Guidance
/// 2.2.1.5.2): CA certificates, one or several concatenated DER per index.
pub(crate) const EK_CHAIN_FIRST: u32 = 0x01c0_0100;
pub(crate) const EK_CHAIN_LAST: u32 = 0x01c0_01ff;
/// Most chain certificates read (a path is at most a few CAs deep).
pub(crate) const MAX_CHAIN_CERTS: usize = 8;

/// The NV indices defined in `first..=last`, ascending.
pub(crate) fn defined_in_range(
    ctx: &mut Context,
    first: u32,
    last: u32,
) -> Result<Vec<u32>, TpmError> {
    let count = last - first + 1;
    let (data, _) = ctx
        .execute_without_session(|c| c.get_capability(CapabilityType::Handles, first, count))
        .map_err(TpmError::tss("GetCapability(handles)"))?;
    let mut out: Vec<u32> = match data {
        CapabilityData::Handles(list) => list
            .iter()
            .filter_map(|h| match h {
                TpmHandle::NvIndex(nv) => Some(u32::from(*nv)),
                _ => None,
            })
            .filter(|i| (first..=last).contains(i))
            .collect(),
        _ => Vec::new(),
    };
    out.sort_unstable();
    Ok(out)
}

/// Splits NV contents into the DER certificates it holds back to back; the
/// rest (NV padding: 0x00 or 0xff) ends the list.
pub(crate) fn split_der_certificates(mut b: &[u8], max: usize) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    while b.first() == Some(&0x30) {
        if out.len() == max {
            return Err(format!("more than {max} certificates"));
        }
        let len = der_len(b)?;
        let (cert, rest) = b.split_at(len);
        out.push(cert.to_vec());
        b = rest;
    }
    if !b.iter().all(|x| *x == 0x00 || *x == 0xff) {
        return Err("bytes after the certificates that are not NV padding".into());
    }
    Ok(out)
}

/// The CA certificates in the EK chain range, in index order (none: empty).
pub(crate) fn read_ek_chain(ctx: &mut Context) -> Result<Vec<Vec<u8>>, TpmError> {
    let mut out = Vec::new();
    for index in defined_in_range(ctx, EK_CHAIN_FIRST, EK_CHAIN_LAST)? {
        let bytes = read_raw(ctx, index)?;
        let certs = split_der_certificates(&bytes, MAX_CHAIN_CERTS - out.len())
            .map_err(|reason| TpmError::EkCertificate { index, reason })?;
        out.extend(certs);
    }
    Ok(out)
}

/// Whether an NV index is defined.
pub(crate) fn index_defined(ctx: &mut Context, index: u32) -> Result<bool, TpmError> {
    let (data, _) = ctx
        .execute_without_session(|c| c.get_capability(CapabilityType::Handles, index, 1))
        .map_err(TpmError::tss("GetCapability(handles)"))?;
    Ok(match data {
        CapabilityData::Handles(list) => list
            .iter()
            .any(|h| matches!(h, TpmHandle::NvIndex(nv) if u32::from(*nv) == index)),
        _ => false,
    })
}

/// Reads a whole NV index (authorised by the index itself, empty auth) and cuts the
/// NV padding after the DER certificate. `None` if the index is not defined.
pub(crate) fn read_der_certificate(
    ctx: &mut Context,
    index: u32,
) -> Result<Option<Vec<u8>>, TpmError> {
    if !index_defined(ctx, index)? {
        return Ok(None);
    }
    let bytes = read_raw(ctx, index)?;
    let len = der_len(&bytes).map_err(|reason| TpmError::EkCertificate { index, reason })?;
    Ok(bytes.get(..len).map(<[u8]>::to_vec))
}

/// Reads a whole defined NV index (authorised by the index itself, empty auth).
fn read_raw(ctx: &mut Context, index: u32) -> Result<Vec<u8>, TpmError> {
    let nv_index = NvIndexTpmHandle::new(index).map_err(TpmError::tss("NV index handle"))?;
    // An ESYS handle only (no TPM object): NvReaderWriter closes it when the read is done.
    let handle = ctx
        .execute_without_session(|c| c.tr_from_tpm_public(TpmHandle::NvIndex(nv_index)))
        .map_err(TpmError::tss("TR_FromTPMPublic(NV index)"))?;
    let read = ctx.execute_with_nullauth_session(|c| {
        nv::read_full(c, NvAuth::NvIndex(handle.into()), nv_index)
    });
    read.map_err(TpmError::tss("NV_Read(EK certificate)"))
}

/// Total length (header + contents) of the DER SEQUENCE at the start of `b`,
/// checked to fit within `b`.
pub(crate) fn der_len(b: &[u8]) -> Result<usize, String> {
    let (tag, first, rest) = match b {
        [t, f, rest @ ..] => (*t, *f, rest),
        _ => return Err(format!("only {} bytes", b.len())),
    };
    if tag != 0x30 {
        return Err(format!("starts with tag {tag:#04x}, not a SEQUENCE (0x30)"));
    }
    let (header, content) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err(format!("unsupported DER length form {first:#04x}"));
        }
        let bytes = rest.get(..n).ok_or("truncated DER length")?;
        (
            2 + n,
            bytes
                .iter()
                .fold(0usize, |acc, x| (acc << 8) | usize::from(*x)),
        )
    };
    let total = header + content;
    if total > b.len() {
        return Err(format!(
            "DER says {total} bytes but the index holds {}",
            b.len()
        ));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::{der_len, split_der_certificates};

    #[test]
    fn concatenated_certificates_split_and_padding_ends_them() {
        let a = [0x30, 0x01, 0x05];
        let b = [0x30, 0x02, 0x05, 0x06];
        let mut nv = [&a[..], &b[..]].concat();
        assert_eq!(
            split_der_certificates(&nv, 8).unwrap(),
            vec![a.to_vec(), b.to_vec()]
        );
        nv.extend([0xff; 5]);
        assert_eq!(split_der_certificates(&nv, 8).unwrap().len(), 2);
        assert!(split_der_certificates(&nv, 1).is_err());
        assert!(split_der_certificates(&[0xff; 3], 8).unwrap().is_empty());
        nv.push(0x07);
        assert!(split_der_certificates(&nv, 8).is_err());
        assert!(split_der_certificates(&[0x30, 0x05, 0x01], 8).is_err());
    }

    #[test]
    fn der_length_forms() {
        assert_eq!(der_len(&[0x30, 0x01, 0x05, 0xff, 0xff]), Ok(3));
        assert_eq!(der_len(&[0x30, 0x82, 0x00, 0x01, 0x05, 0x00]), Ok(5));
        assert!(der_len(&[0x30, 0x82, 0x01, 0x00, 0x05]).is_err());
        assert!(der_len(&[0x04, 0x01, 0x05]).is_err());
        assert!(der_len(&[0xff; 4]).is_err());
        assert!(der_len(&[0x30, 0x80]).is_err());
    }
}

//! Reading one HTTP/1.1 request, for the tests' own small servers (the
//! webhook receiver, the fake kube-apiserver): what the verifier sends is
//! what is under test, so it is read byte by byte as it came, bounded.

use std::collections::BTreeMap;
use std::io::BufRead;

/// Most header bytes read.
pub const MAX_HEADERS: usize = 16 * 1024;

pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// Reads a request line, headers (up to [`MAX_HEADERS`]) and a body of
/// `content-length` bytes (up to `max_body`).
pub fn read_request(r: &mut impl BufRead, max_body: usize) -> std::io::Result<Request> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = BTreeMap::new();
    let mut size = 0;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" || size > MAX_HEADERS {
            break;
        }
        size += h.len();
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0)
        .min(max_body);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Request {
        method,
        path,
        headers,
        body,
    })
}

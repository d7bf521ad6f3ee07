//! EK certificates published by the TPM vendor instead of held in NV (AMD
//! fTPM, Intel PTT): the attestor fetches its certificate from the vendor's
//! service, refuses one that is not for its EK, keeps a good one in the state
//! dir, and enrolls with it. The service is a local HTTPS server (loopback
//! only; the real ekop.intel.com / ftpm.amd.com are not reachable from CI),
//! speaking Intel's format; tpm2_getekcertificate (tpm2-tools) is the oracle
//! for the URL path an EK maps to.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};

use assay_tests::{attestor, Swtpm, TestCa, VerifierOpts, VerifierProc};
use base64::Engine as _;

/// A loopback HTTPS server answering GET PATH from a map; records the paths asked.
struct Service {
    port: u16,
    ca_pem: tempfile::NamedTempFile,
    answers: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    asked: Arc<Mutex<Vec<String>>>,
}

impl Service {
    fn start() -> Service {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap())];
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        let mut ca_pem = tempfile::NamedTempFile::new().unwrap();
        ca_pem.write_all(ca.pem().as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let answers: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let asked: Arc<Mutex<Vec<String>>> = Arc::default();
        let (a, q) = (answers.clone(), asked.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().take(64) {
                let Ok(tcp) = stream else { continue };
                let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                    continue;
                };
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let path = line.split(' ').nth(1).unwrap_or("").to_string();
                q.lock().unwrap().push(path.clone());
                let body = a.lock().unwrap().get(&path).cloned();
                let head = match &body {
                    Some(b) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        b.len()
                    ),
                    None => {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .into()
                    }
                };
                let _ = tls.write_all(head.as_bytes());
                let _ = tls.write_all(&body.unwrap_or_default());
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        Service {
            port,
            ca_pem,
            answers,
            asked,
        }
    }

    fn base(&self) -> String {
        format!("https://127.0.0.1:{}/ekcertservice/", self.port)
    }

    /// Answers every path with Intel's JSON around `der`.
    fn serve_everywhere(&self, paths: &[String], der: &[u8]) {
        let b64 = base64::engine::general_purpose::URL_SAFE.encode(der);
        let json = format!("{{\"pubhash\":\"-\",\"certificate\":\"{b64}\"}}");
        for p in paths {
            self.answers
                .lock()
                .unwrap()
                .insert(p.clone(), json.clone().into_bytes());
        }
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

fn text(o: &Output) -> String {
    assay_tests::output_text(o)
}

/// A certificate from `ca`'s intermediate for the RSA EK of `tpm` (template L-1);
/// also leaves the EK public area (tss format) at dir/ek.tss.
fn vendor_certificate(tpm: &Swtpm, ca: &TestCa, dir: &Path) -> Vec<u8> {
    let p = |n: &str| dir.join(n).display().to_string();
    tpm.ek_public_pem("rsa", &dir.join("ek.pem")).unwrap();
    tpm.tpm2(
        "tpm2_createek",
        &["-G", "rsa", "-c", &p("ek.ctx"), "-u", &p("ek.tss")],
    )
    .unwrap();
    tpm.tpm2("tpm2_flushcontext", &["-t"]).unwrap();
    ca.issue_ek_certificate(&dir.join("ek.pem"), "keyEncipherment")
        .unwrap()
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

#[test]
fn attestor_fetches_checks_keeps_and_enrolls_with_the_vendor_published_certificate() {
    let ca = TestCa::with_crl_signing().unwrap();
    let mut o = VerifierOpts::new(format!(
        "schema = 0\nname = \"fetch\"\n[pcrs.sha256]\n0 = \"{}\"\n",
        "0".repeat(64)
    ));
    o.ek_roots = vec![ca.root_cert_path()];
    o.ek_intermediates = vec![ca.issuer_cert_path()];
    let v = VerifierProc::start(&o).unwrap();
    let tpm = Swtpm::start_without_ek_certificate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let der = vendor_certificate(&tpm, &ca, dir.path());
    let svc = Service::start();

    // The oracle: the path tpm2_getekcertificate asks Intel's service for this EK.
    let _ = tpm.tpm2(
        "tpm2_getekcertificate",
        &[
            "-x",
            "-X",
            "-u",
            dir.path().join("ek.tss").to_str().unwrap(),
            "-o",
            dir.path().join("oracle.der").to_str().unwrap(),
            &svc.base(),
        ],
    );
    let oracle_paths = svc.asked();
    assert_eq!(
        oracle_paths.len(),
        1,
        "tpm2_getekcertificate asked {oracle_paths:?}"
    );
    assert!(
        oracle_paths[0].starts_with("/ekcertservice/"),
        "{oracle_paths:?}"
    );

    let state = tempfile::tempdir().unwrap();
    let fetch_args = [
        "--fetch-ek-certificate",
        "--ek-cert-service",
        "intel",
        "--ek-cert-service-url",
        &svc.base(),
        "--ek-cert-service-ca",
        svc.ca_pem.path().to_str().unwrap(),
    ];
    // 1. The service answers with another EK's certificate (a substituted answer): refused,
    //    nothing kept, nothing enrolled.
    let other_tpm = Swtpm::start_with_ca(&ca).unwrap();
    let other = other_tpm.tpm2("tpm2_nvread", &["0x1c00002"]).unwrap();
    let other_len = 4 + ((other[2] as usize) << 8 | other[3] as usize);
    svc.serve_everywhere(&oracle_paths, &other[..other_len]);
    let out = attestor(&tpm, &v, state.path(), "fetched", "join", &fetch_args).unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains("not for this TPM's EK"),
        "{}",
        text(&out)
    );
    assert!(!state.path().join("ek-cert.der").exists());
    // The attestor asked for the same path as tpm2-tools.
    assert_eq!(svc.asked().last(), oracle_paths.last());

    // 2. The right certificate: kept, sent, validated by the verifier, enrolled.
    svc.serve_everywhere(&oracle_paths, &der);
    let out = attestor(&tpm, &v, state.path(), "fetched", "join", &fetch_args).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(state.path().join("ek-cert.der")).unwrap(),
        der
    );
    let show = v.cli(&["node", "show", "fetched", "--json"]).unwrap();
    let j: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(j["ek_sha256"], sha256_hex(&der), "{j}");

    // 3. Re-enrollment uses the kept certificate: the service is not asked again.
    let asked = svc.asked().len();
    let out = attestor(&tpm, &v, state.path(), "fetched", "enroll", &fetch_args).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(svc.asked().len(), asked);

    // 4. Without the option, a TPM with no certificate in NV sends none and an open-mode
    //    verifier refuses it, as before.
    let fresh = tempfile::tempdir().unwrap();
    let out = attestor(&tpm, &v, fresh.path(), "fetched2", "join", &[]).unwrap();
    assert!(!out.status.success(), "{}", text(&out));
}

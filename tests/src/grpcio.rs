//! grpcio's health-checking and reflection clients (PyPI), driven through
//! `tests/grpc_clients/health_reflection.py`: gRPC clients Assay did not write.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{bin, VerifierProc};

/// The Python of the venv holding grpcio's health and reflection clients
/// (`ASSAY_GRPC_VENV`, or `grpc-venv` in the target directory), which
/// `tests/install-deps.sh` makes; and the client script, `tests/grpc_clients/`.
pub fn grpc_python() -> anyhow::Result<(PathBuf, PathBuf)> {
    let venv = match std::env::var_os("ASSAY_GRPC_VENV") {
        Some(v) => PathBuf::from(v),
        None => bin("assay-verifier")?
            .parent()
            .and_then(Path::parent)
            .map(|t| t.join("grpc-venv"))
            .ok_or_else(|| anyhow::anyhow!("locating the target directory"))?,
    };
    let python = venv.join("bin/python");
    anyhow::ensure!(
        python.exists(),
        "{} is missing: run `bash tests/install-deps.sh` (it installs grpcio, \
         grpcio-health-checking and grpcio-reflection from PyPI into {})",
        python.display(),
        venv.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("grpc_clients/health_reflection.py");
    Ok((python, script))
}

/// Runs the client script against `v` (with the operator's certificate when
/// `cert` is given); its JSON answer, or its stderr as the error.
pub fn client(v: &VerifierProc, cert: Option<(&Path, &Path)>, args: &[&str]) -> serde_json::Value {
    let (python, script) = grpc_python().unwrap();
    let target = v.url.trim_start_matches("https://");
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .args(["--target", target, "--ca"])
        .arg(&v.ca_pem);
    if let Some((c, k)) = cert {
        cmd.arg("--cert").arg(c).arg("--key").arg(k);
    }
    let out = cmd.args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stdout}{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

/// The health status the client reads for `service`.
pub fn health(v: &VerifierProc, service: &str) -> String {
    let r = client(v, None, &["check", service]);
    match r["status"].as_str() {
        Some(s) => s.to_string(),
        None => format!("error {}", r["error"]),
    }
}

//! The few Docker Engine API calls the Swarm issuer needs (swarm inspect and
//! update, node list and update), over the daemon's Unix socket with HTTP/1.1.
//!
//! Four JSON calls do not justify a full Docker client crate (bollard and its
//! generated API stubs are a heavy build for this); hyper is already here through
//! tonic. Every response is bounded in size and every call in time.

use std::path::PathBuf;
use std::time::Duration;

use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use serde::de::DeserializeOwned;

/// API version spoken: Docker 20.10 (Debian 12's docker.io) and every newer daemon accept it.
const API: &str = "/v1.41";
/// Largest response body read (a node list of a few thousand nodes fits).
const MAX_RESPONSE: usize = 16 * 1024 * 1024;
/// Longest a call may take, connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("Docker API at {socket}: {message}")]
    Transport { socket: String, message: String },
    #[error("Docker API {method} {path}: HTTP {status}: {message}")]
    Api {
        method: String,
        path: String,
        status: u16,
        message: String,
    },
    #[error("Docker API {path}: unexpected response: {message}")]
    Decode { path: String, message: String },
}

/// A Docker Engine reachable on a Unix socket.
#[derive(Debug, Clone)]
pub struct Docker {
    socket: PathBuf,
}

impl Docker {
    pub fn new(socket: PathBuf) -> Self {
        Self { socket }
    }

    fn transport(&self, message: impl std::fmt::Display) -> DockerError {
        DockerError::Transport {
            socket: self.socket.display().to_string(),
            message: message.to_string(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Bytes, DockerError> {
        tokio::time::timeout(CALL_TIMEOUT, self.call_inner(method.clone(), path, body))
            .await
            .map_err(|_| {
                self.transport(format!(
                    "{method} {path}: no answer within {CALL_TIMEOUT:?}"
                ))
            })?
    }

    async fn call_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Bytes, DockerError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| self.transport(format!("connecting: {e}")))?;
        let payload = match body {
            Some(v) => Bytes::from(serde_json::to_vec(v).map_err(|e| self.transport(e))?),
            None => Bytes::new(),
        };
        let full = format!("{API}{path}");
        let (status, bytes) = crate::http::request(
            stream,
            crate::http::Sent {
                method: method.clone(),
                path: &full,
                host: "docker",
                headers: &[],
                body: payload,
                max_response: MAX_RESPONSE,
            },
        )
        .await
        .map_err(|e| self.transport(e))?;
        if status != StatusCode::OK {
            // Docker's errors are {"message": "..."}.
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into());
            return Err(DockerError::Api {
                method: method.to_string(),
                path: path.to_string(),
                status: status.as_u16(),
                message,
            });
        }
        Ok(bytes)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, DockerError> {
        let bytes = self.call(Method::GET, path, None).await?;
        serde_json::from_slice(&bytes).map_err(|e| DockerError::Decode {
            path: path.to_string(),
            message: e.to_string(),
        })
    }

    pub async fn post(&self, path: &str, body: &serde_json::Value) -> Result<(), DockerError> {
        self.call(Method::POST, path, Some(body)).await.map(drop)
    }
}

//! Images and container starts from containerd, over its gRPC socket: listed at
//! start-up, then followed live on its event stream (`/images/create`,
//! `/images/update`, `/tasks/start`), each turned into a [`Measurement`].
//!
//! An image is measured by the digest of its target descriptor as containerd
//! stores it (the manifest, or the index for a multi-platform image) and, for a
//! single manifest, the config digest read from the manifest blob. A container
//! start is measured with the image its container record names (none for a
//! container made from a bare root filesystem).

use std::path::{Path, PathBuf};
use std::time::Duration;

use assay_core::eventlog::cel::{is_oci_sha256, Measurement, MAX_FIELD};
use assay_proto::containerd::events as ev;
use assay_proto::containerd::services::containers::v1 as containers;
use assay_proto::containerd::services::content::v1 as content;
use assay_proto::containerd::services::events::v1 as events;
use assay_proto::containerd::services::images::v1 as images;
use assay_proto::containerd::services::tasks::v1 as tasks;
use assay_proto::containerd::v1::types::Status;
use prost::Message;
use tonic::transport::{Channel, Endpoint};
use tonic::Request;

/// containerd's socket unless configured.
pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";
/// Namespaces watched unless configured: `ctr`'s and Kubernetes' (CRI).
pub const DEFAULT_NAMESPACES: &[&str] = &["default", "k8s.io"];
/// Largest manifest read from the content store.
const MAX_MANIFEST: usize = 4 << 20;
const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("containerd at {socket}: {reason}")]
    Connect { socket: String, reason: String },
    #[error("containerd {call}: {status}")]
    Call { call: &'static str, status: String },
}

fn call(call: &'static str) -> impl Fn(tonic::Status) -> ContainerdError {
    move |s| ContainerdError::Call {
        call,
        status: format!("{:?}: {}", s.code(), s.message()),
    }
}

/// A connection to containerd.
#[derive(Clone)]
pub struct Containerd {
    ch: Channel,
}

fn with_ns<T>(ns: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    if let Ok(v) = ns.parse() {
        r.metadata_mut().insert("containerd-namespace", v);
    }
    r.set_timeout(Duration::from_secs(10));
    r
}

/// The message name of an event envelope's payload. containerd 1.6 names them
/// after its Go packages (`containerd.services.images.v1.ImageCreate`), other
/// versions `containerd.events.ImageCreate`; the message is the same.
fn type_name(url: &str) -> &str {
    url.rsplit(['/', '.']).next().unwrap_or(url)
}

impl Containerd {
    /// Connects to containerd's unix socket (bounded: 5 s).
    pub async fn connect(socket: &Path) -> Result<Self, ContainerdError> {
        let path: PathBuf = socket.to_path_buf();
        let err = |reason: String| ContainerdError::Connect {
            socket: socket.display().to_string(),
            reason,
        };
        // The URI is required by tonic and ignored by the connector.
        let endpoint = Endpoint::try_from("http://containerd.sock")
            .map_err(|e| err(e.to_string()))?
            .connect_timeout(Duration::from_secs(5));
        let ch = endpoint
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    let s = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                }
            }))
            .await
            .map_err(|e| err(format!("{e} ({:?})", std::error::Error::source(&e))))?;
        Ok(Self { ch })
    }

    /// The measurement of image `name` in namespace `ns`.
    pub async fn image(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<Measurement>, ContainerdError> {
        let mut c = images::images_client::ImagesClient::new(self.ch.clone());
        let r = c
            .get(with_ns(ns, images::GetImageRequest { name: name.into() }))
            .await;
        let image = match r {
            Ok(r) => r.into_inner().image,
            Err(s) if s.code() == tonic::Code::NotFound => None,
            Err(s) => return Err(call("Images.Get")(s)),
        };
        match image {
            Some(i) => Ok(self.measure_image(ns, i).await),
            None => Ok(None),
        }
    }

    /// Measurements of every image in namespace `ns`.
    pub async fn images(&self, ns: &str) -> Result<Vec<Measurement>, ContainerdError> {
        let mut c = images::images_client::ImagesClient::new(self.ch.clone());
        let list = c
            .list(with_ns(ns, images::ListImagesRequest { filters: vec![] }))
            .await
            .map_err(call("Images.List"))?
            .into_inner()
            .images;
        let mut out = Vec::new();
        for i in list {
            out.extend(self.measure_image(ns, i).await);
        }
        Ok(out)
    }

    async fn measure_image(&self, ns: &str, i: images::Image) -> Option<Measurement> {
        let target = i.target?;
        if !is_oci_sha256(&target.digest) || i.name.is_empty() || i.name.len() > MAX_FIELD {
            tracing::warn!(image = %i.name, digest = %target.digest, "image not measured: unusual name or digest");
            return None;
        }
        let config_digest = if target.media_type == MEDIA_OCI_MANIFEST
            || target.media_type == MEDIA_DOCKER_MANIFEST
        {
            self.config_digest(ns, &target.digest).await
        } else {
            None
        };
        Some(Measurement::Image {
            reference: i.name,
            manifest_digest: target.digest,
            config_digest,
        })
    }

    /// The `config.digest` of the manifest blob `digest`, best effort.
    async fn config_digest(&self, ns: &str, digest: &str) -> Option<String> {
        let mut c = content::content_client::ContentClient::new(self.ch.clone());
        let mut stream = c
            .read(with_ns(
                ns,
                content::ReadContentRequest {
                    digest: digest.into(),
                    offset: 0,
                    size: 0,
                },
            ))
            .await
            .ok()?
            .into_inner();
        let mut blob = Vec::new();
        while let Some(chunk) = stream.message().await.ok()? {
            if blob.len() + chunk.data.len() > MAX_MANIFEST {
                return None;
            }
            blob.extend_from_slice(&chunk.data);
        }
        let v: serde_json::Value = serde_json::from_slice(&blob).ok()?;
        v["config"]["digest"]
            .as_str()
            .filter(|d| is_oci_sha256(d))
            .map(str::to_string)
    }

    /// The measurement of container `id` starting, in namespace `ns`.
    /// `known_image` is the image its `/containers/create` event named, for a
    /// container already gone when asked (`ctr run --rm` of a short task).
    pub async fn container_start(
        &self,
        ns: &str,
        id: &str,
        known_image: Option<String>,
    ) -> Result<Option<Measurement>, ContainerdError> {
        if id.is_empty() || id.len() > MAX_FIELD {
            return Ok(None);
        }
        let mut c = containers::containers_client::ContainersClient::new(self.ch.clone());
        let container = match c
            .get(with_ns(
                ns,
                containers::GetContainerRequest { id: id.into() },
            ))
            .await
        {
            Ok(r) => r.into_inner().container,
            Err(s) if s.code() == tonic::Code::NotFound => None,
            Err(s) => return Err(call("Containers.Get")(s)),
        };
        let image_name = container
            .map(|c| c.image)
            .or(known_image)
            .filter(|i| !i.is_empty());
        let (image_digest, image_reference) = match &image_name {
            Some(name) => match self.image(ns, name).await? {
                Some(Measurement::Image {
                    manifest_digest, ..
                }) => (Some(manifest_digest), Some(name.clone())),
                _ => (None, Some(name.clone())),
            },
            None => (None, None),
        };
        Ok(Some(Measurement::ContainerStart {
            container_id: id.into(),
            image_digest,
            image_reference,
        }))
    }

    /// Measurements of the containers running in namespace `ns`.
    pub async fn running(&self, ns: &str) -> Result<Vec<Measurement>, ContainerdError> {
        let mut c = tasks::tasks_client::TasksClient::new(self.ch.clone());
        let list = c
            .list(with_ns(
                ns,
                tasks::ListTasksRequest {
                    filter: String::new(),
                },
            ))
            .await
            .map_err(call("Tasks.List"))?
            .into_inner()
            .tasks;
        let mut out = Vec::new();
        for t in list.iter().filter(|t| t.status == Status::Running as i32) {
            out.extend(self.container_start(ns, &t.container_id, None).await?);
        }
        Ok(out)
    }

    /// Subscribes to the image and task-start events of `namespaces`.
    pub async fn subscribe(
        &self,
        namespaces: &[String],
    ) -> Result<tonic::Streaming<events::Envelope>, ContainerdError> {
        let mut c = events::events_client::EventsClient::new(self.ch.clone());
        let mut filters = Vec::new();
        for ns in namespaces {
            for topic in [
                "/images/create",
                "/images/update",
                "/containers/create",
                "/tasks/start",
            ] {
                filters.push(format!("namespace=={ns},topic==\"{topic}\""));
            }
        }
        let mut req = Request::new(events::SubscribeRequest { filters });
        req.set_timeout(Duration::from_secs(365 * 24 * 3600));
        Ok(c.subscribe(req)
            .await
            .map_err(call("Events.Subscribe"))?
            .into_inner())
    }

    /// The measurement an event calls for, if any.
    /// `created` remembers the image of each container created (bounded), for its start.
    pub async fn measurement_for(
        &self,
        e: &events::Envelope,
        created: &mut ContainerImages,
    ) -> Result<Option<Measurement>, ContainerdError> {
        let Some(any) = &e.event else { return Ok(None) };
        match type_name(&any.type_url) {
            "ImageCreate" => match ev::ImageCreate::decode(any.value.as_slice()) {
                Ok(i) => self.image(&e.namespace, &i.name).await,
                Err(_) => Ok(None),
            },
            "ImageUpdate" => match ev::ImageUpdate::decode(any.value.as_slice()) {
                Ok(i) => self.image(&e.namespace, &i.name).await,
                Err(_) => Ok(None),
            },
            "ContainerCreate" => {
                if let Ok(c) = ev::ContainerCreate::decode(any.value.as_slice()) {
                    created.insert(&e.namespace, &c.id, c.image);
                }
                Ok(None)
            }
            "TaskStart" => match ev::TaskStart::decode(any.value.as_slice()) {
                Ok(t) => {
                    let known = created.take(&e.namespace, &t.container_id);
                    self.container_start(&e.namespace, &t.container_id, known)
                        .await
                }
                Err(_) => Ok(None),
            },
            _ => Ok(None),
        }
    }
}

/// The image each recently created container was made from, by namespace and
/// id; bounded (the oldest half is dropped when full).
#[derive(Default)]
pub struct ContainerImages {
    map: std::collections::HashMap<(String, String), (u64, String)>,
    next: u64,
}

const MAX_REMEMBERED: usize = 4096;

impl ContainerImages {
    fn insert(&mut self, ns: &str, id: &str, image: String) {
        if self.map.len() >= MAX_REMEMBERED {
            let cut = self.next.saturating_sub(MAX_REMEMBERED as u64 / 2);
            self.map.retain(|_, (n, _)| *n >= cut);
        }
        self.next += 1;
        self.map.insert((ns.into(), id.into()), (self.next, image));
    }

    fn take(&mut self, ns: &str, id: &str) -> Option<String> {
        self.map
            .remove(&(ns.to_string(), id.to_string()))
            .map(|(_, i)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_names_from_any_urls() {
        assert_eq!(type_name("containerd.events.TaskStart"), "TaskStart");
        assert_eq!(
            type_name("containerd.services.images.v1.ImageCreate"),
            "ImageCreate"
        );
        assert_eq!(
            type_name("type.googleapis.com/containerd.events.ImageUpdate"),
            "ImageUpdate"
        );
    }

    #[test]
    fn remembered_container_images_are_bounded() {
        let mut m = ContainerImages::default();
        for i in 0..(MAX_REMEMBERED * 3) {
            m.insert("default", &format!("c{i}"), format!("img{i}"));
        }
        assert!(m.map.len() <= MAX_REMEMBERED);
        let last = MAX_REMEMBERED * 3 - 1;
        assert_eq!(
            m.take("default", &format!("c{last}")),
            Some(format!("img{last}"))
        );
        assert_eq!(m.take("default", "c0"), None);
    }
}

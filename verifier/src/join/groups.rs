//! Node groups: each group of nodes (node ids matching an anchored regular
//! expression, as policy patterns are) joins its own orchestrator; nodes no
//! group names join the default one. The first group that matches wins.
//!
//! ```toml
//! [join]
//! orchestrator = "token"            # nodes in no group
//! [[join.groups]]
//! name = "k8s-workers"
//! nodes = "k8s-worker-[0-9]+"
//! orchestrator = "kubeadm"          # settings from [join.kubernetes]
//! ```

use std::sync::Arc;

use super::{BoxFuture, Grant, IssueFor, JoinError, JoinIssuer};

pub struct Group {
    pub name: String,
    pub nodes: regex::Regex,
    pub issuer: Arc<dyn JoinIssuer>,
}

/// Compiles a group's node pattern, anchored at both ends, size-limited
/// (the `regex` crate matches in linear time).
pub fn node_pattern(source: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{source})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| e.to_string())
}

/// Routes each node to its group's issuer.
pub struct Groups {
    pub groups: Vec<Group>,
    pub default: Arc<dyn JoinIssuer>,
    /// Every distinct issuer once, for `tick`.
    pub all: Vec<Arc<dyn JoinIssuer>>,
}

impl Groups {
    fn group(&self, node_id: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.nodes.is_match(node_id))
    }

    fn route(&self, node_id: &str) -> &Arc<dyn JoinIssuer> {
        self.group(node_id).map_or(&self.default, |g| &g.issuer)
    }
}

impl JoinIssuer for Groups {
    fn name(&self) -> &'static str {
        self.default.name()
    }

    fn name_for(&self, node_id: &str) -> &'static str {
        self.route(node_id).name()
    }

    fn group_of(&self, node_id: &str) -> Option<&str> {
        self.group(node_id).map(|g| g.name.as_str())
    }

    fn issue<'a>(&'a self, to: IssueFor<'a>) -> BoxFuture<'a, Result<Grant, JoinError>> {
        self.route(to.node_id).issue(to)
    }

    fn quarantine<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<Vec<String>, JoinError>> {
        self.route(node_id).quarantine(node_id)
    }

    fn revoke<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<Vec<String>, JoinError>> {
        self.route(node_id).revoke(node_id)
    }

    fn restore<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<Vec<String>, JoinError>> {
        self.route(node_id).restore(node_id)
    }

    fn tick(&self, now_unix: i64) -> BoxFuture<'_, Result<(), JoinError>> {
        Box::pin(async move {
            // Every issuer gets its tick even if another's fails.
            let mut first_err = None;
            for i in &self.all {
                if let Err(e) = i.tick(now_unix).await {
                    first_err.get_or_insert(e);
                }
            }
            first_err.map_or(Ok(()), Err)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records what it was asked, under its own name.
    struct Probe {
        name: &'static str,
        calls: Mutex<Vec<String>>,
    }

    impl Probe {
        fn new(name: &'static str) -> Arc<Self> {
            Arc::new(Self {
                name,
                calls: Mutex::new(Vec::new()),
            })
        }
        fn took(&self, what: String) {
            self.calls.lock().unwrap().push(what);
        }
    }

    impl JoinIssuer for Probe {
        fn name(&self) -> &'static str {
            self.name
        }
        fn issue<'a>(&'a self, to: IssueFor<'a>) -> BoxFuture<'a, Result<Grant, JoinError>> {
            self.took(format!("issue {}", to.node_id));
            Box::pin(async move {
                Ok(Grant {
                    orchestrator: self.name,
                    token: String::new(),
                    endpoint: String::new(),
                    ca_cert_hash: String::new(),
                    expires_unix: 0,
                })
            })
        }
        fn quarantine<'a>(&'a self, n: &'a str) -> BoxFuture<'a, Result<Vec<String>, JoinError>> {
            self.took(format!("quarantine {n}"));
            Box::pin(async { Ok(Vec::new()) })
        }
        fn revoke<'a>(&'a self, n: &'a str) -> BoxFuture<'a, Result<Vec<String>, JoinError>> {
            self.took(format!("revoke {n}"));
            Box::pin(async { Ok(Vec::new()) })
        }
        fn restore<'a>(&'a self, n: &'a str) -> BoxFuture<'a, Result<Vec<String>, JoinError>> {
            self.took(format!("restore {n}"));
            Box::pin(async { Ok(Vec::new()) })
        }
        fn tick(&self, _: i64) -> BoxFuture<'_, Result<(), JoinError>> {
            self.took("tick".into());
            Box::pin(async move {
                if self.name == "swarm" {
                    Err(JoinError::Orchestrator("manager down".into()))
                } else {
                    Ok(())
                }
            })
        }
    }

    #[tokio::test]
    async fn each_node_goes_to_its_group_s_orchestrator_and_no_other() {
        let k8s = Probe::new("kubeadm");
        let swarm = Probe::new("swarm");
        let token = Probe::new("token");
        let g = Groups {
            groups: vec![
                Group {
                    name: "k8s".into(),
                    nodes: node_pattern("k8s-[0-9]+").unwrap(),
                    issuer: k8s.clone(),
                },
                Group {
                    name: "edge".into(),
                    nodes: node_pattern("edge-.*|k8s-.*").unwrap(),
                    issuer: swarm.clone(),
                },
            ],
            default: token.clone(),
            all: vec![k8s.clone(), swarm.clone(), token.clone()],
        };
        let to = |n| IssueFor {
            node_id: n,
            jws: "j",
            jws_expires_unix: 0,
            now_unix: 0,
            history_seq: 1,
            policy: "p".into(),
        };
        assert_eq!(g.issue(to("k8s-1")).await.unwrap().orchestrator, "kubeadm");
        // First match wins; anchored: "k8s-1x" is not "k8s-[0-9]+".
        assert_eq!(g.issue(to("k8s-1x")).await.unwrap().orchestrator, "swarm");
        assert_eq!(g.issue(to("edge-7")).await.unwrap().orchestrator, "swarm");
        assert_eq!(g.issue(to("xk8s-1")).await.unwrap().orchestrator, "token");
        g.quarantine("edge-7").await.unwrap();
        g.restore("edge-7").await.unwrap();
        g.revoke("k8s-2").await.unwrap();
        assert_eq!(g.name_for("k8s-2"), "kubeadm");
        assert_eq!(g.group_of("edge-1"), Some("edge"));
        assert_eq!(g.group_of("db-1"), None);
        // A failing tick does not starve the others, and is reported.
        assert!(g.tick(0).await.is_err());
        let calls = |p: &Probe| p.calls.lock().unwrap().clone();
        assert_eq!(calls(&k8s), ["issue k8s-1", "revoke k8s-2", "tick"]);
        assert_eq!(
            calls(&swarm),
            [
                "issue k8s-1x",
                "issue edge-7",
                "quarantine edge-7",
                "restore edge-7",
                "tick"
            ]
        );
        assert_eq!(calls(&token), ["issue xk8s-1", "tick"]);
    }

    #[test]
    fn node_patterns_are_anchored_and_bounded() {
        assert!(node_pattern("a|b").unwrap().is_match("b"));
        assert!(!node_pattern("a|b").unwrap().is_match("ab"));
        assert!(node_pattern("(").is_err());
        assert!(node_pattern("a{1000}{1000}").is_err(), "size limit");
    }
}

//! A real PostgreSQL server for tests: Debian's `postgresql` binaries, a
//! cluster made with `initdb` in a temporary directory, listening on a free
//! loopback port, one per test process (shared by its tests); each test gets
//! a database of its own.
//!
//! The server also accepts TLS (`ssl=on`) with a certificate for the DNS name
//! `localhost` only, from a CA of its own ([`PgCluster::tls_ca`]): a client
//! connecting to `localhost` and trusting that CA verifies it; one connecting
//! to `127.0.0.1` meets a certificate for another name. Plaintext stays
//! accepted (the other tests use it).
//!
//! As root (CI), the server runs as the `postgres` user (it refuses root).
//! A watchdog shell stops the server (fast shutdown) and removes the cluster
//! when the test process exits, however it exits.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context, Result};

pub struct PgCluster {
    bin: PathBuf,
    /// Its data directory (`postmaster.pid` names the server).
    data: PathBuf,
    pub port: u16,
    /// The CA of the server's TLS certificate (for `localhost`).
    pub tls_ca: PathBuf,
    /// As root, the unprivileged account the server runs as.
    run_as: Option<String>,
}

/// One database on the shared cluster.
pub struct PgDb {
    pub name: String,
    /// Connection string for `[storage] url` / `PgConfig::url`.
    pub url: String,
    cluster: &'static PgCluster,
}

/// The directory holding `initdb`, `postgres`, `psql`: `ASSAY_PG_BINDIR`, or the
/// newest `/usr/lib/postgresql/<version>/bin` (Debian's layout).
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("ASSAY_PG_BINDIR") {
        return Ok(PathBuf::from(d));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b).context(
        "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: install \
         Debian's `postgresql` package (tests/install-deps.sh does) or set ASSAY_PG_BINDIR",
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn id_of(user: &str, flag: &str) -> Result<u32> {
    let o = Command::new("id").args([flag, user]).output()?;
    anyhow::ensure!(
        o.status.success(),
        "no user `{user}` (the postgresql package creates it)"
    );
    Ok(String::from_utf8_lossy(&o.stdout).trim().parse()?)
}

impl PgCluster {
    /// The cluster of this test process, started on first use.
    pub fn shared() -> Result<&'static PgCluster> {
        static CLUSTER: OnceLock<std::result::Result<PgCluster, String>> = OnceLock::new();
        CLUSTER
            .get_or_init(|| PgCluster::start().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("starting PostgreSQL: {e}"))
    }

    fn command(&self, program: &str) -> Command {
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={user}"))
                    .arg(format!("--regid={user}"))
                    .arg("--init-groups")
                    .arg(self.bin.join(program));
                c
            }
            None => Command::new(self.bin.join(program)),
        }
    }

    fn start() -> Result<Self> {
        let bin = bin_dir()?;
        let run_as = is_root().then(|| "postgres".to_string());
        // Not a TempDir: the watchdog removes it after this process is gone.
        let root = tempfile::Builder::new()
            .prefix("assay-pg-")
            .tempdir()?
            .keep();
        let data = root.join("data");
        let sock = root.join("sock");
        std::fs::create_dir(&sock)?;
        // TLS material, copied next to the cluster (the watchdog removes it).
        let tls = root.join("tls");
        std::fs::create_dir(&tls)?;
        {
            let pki = crate::Pki::new("Assay test PostgreSQL CA")?;
            let (cert, key) = pki.server("server", &["localhost"])?;
            std::fs::copy(pki.ca_pem(), tls.join("ca.pem"))?;
            std::fs::copy(cert, tls.join("server.pem"))?;
            std::fs::copy(key, tls.join("server.key"))?;
        }
        if let Some(user) = &run_as {
            let (uid, gid) = (id_of(user, "-u")?, id_of(user, "-g")?);
            for p in [
                &root,
                &sock,
                &tls,
                &tls.join("server.pem"),
                &tls.join("server.key"),
            ] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))
                    .with_context(|| format!("chown {}", p.display()))?;
            }
        }
        let port = free_port()?;
        let cluster = Self {
            bin,
            data: data.clone(),
            port,
            tls_ca: tls.join("ca.pem"),
            run_as,
        };
        let out = cluster
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let server = cluster.command("postgres");
        let mut line = vec![server.get_program().to_owned()];
        line.extend(server.get_args().map(|a| a.to_owned()));
        let quoted: Vec<String> = line
            .iter()
            .map(|a| format!("'{}'", a.to_string_lossy().replace('\'', "'\\''")))
            .collect();
        let log = root.join("postgres.log");
        let script = format!(
            "{server} -D '{data}' -k '{sock}' -p {port} -c listen_addresses=127.0.0.1 \
             -c max_connections=300 -c ssl=on -c ssl_cert_file='{tls}/server.pem' \
             -c ssl_key_file='{tls}/server.key' >'{log}' 2>&1 & pg=$!\n\
             while kill -0 {watch} 2>/dev/null && kill -0 $pg 2>/dev/null; do sleep 0.5; done\n\
             kill -INT $pg 2>/dev/null; wait $pg; rm -rf '{root}'\n",
            server = quoted.join(" "),
            data = data.display(),
            sock = sock.display(),
            log = log.display(),
            tls = tls.display(),
            watch = std::process::id(),
            root = root.display(),
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting postgres")?;
        // Ready when it answers a query (bounded: 30 s).
        let start = std::time::Instant::now();
        loop {
            if cluster.psql("postgres", "SELECT 1").is_ok() {
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("postgres did not accept connections within 30 s; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(cluster)
    }

    /// Stops the server (fast shutdown: sessions are ended) and waits until
    /// it no longer answers (bounded: 30 s). The cluster is this test
    /// process's for good: only for a test binary whose other tests do not
    /// use PostgreSQL.
    pub fn stop(&self) -> Result<()> {
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .context("reading postmaster.pid")?;
        let pid = pid.lines().next().unwrap_or_default().trim().to_string();
        let st = Command::new("kill").args(["-INT", &pid]).status()?;
        anyhow::ensure!(st.success(), "kill -INT {pid} failed");
        let start = std::time::Instant::now();
        while self.psql("postgres", "SELECT 1").is_ok() {
            if start.elapsed() > Duration::from_secs(30) {
                bail!("postgres still answers 30 s after SIGINT");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Runs SQL with psql as the superuser; its output (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let out = Command::new(self.bin.join("psql"))
            // The harness's own sessions in clear (the TLS tests tell them apart).
            .env("PGSSLMODE", "disable")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args([
                "-d",
                db,
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!(
                "psql `{sql}`: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// A new, empty database.
    pub fn database(&'static self) -> Result<PgDb> {
        self.create(None)
    }

    /// A new database, empty or a copy of `template` (which nobody may be
    /// connected to: retried for up to 5 s while old sessions end).
    fn create(&'static self, template: Option<&str>) -> Result<PgDb> {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "assay_test_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let sql = match template {
            Some(t) => format!("CREATE DATABASE {name} TEMPLATE {t}"),
            None => format!("CREATE DATABASE {name}"),
        };
        let start = std::time::Instant::now();
        while let Err(e) = self.psql("postgres", &sql) {
            if start.elapsed() > Duration::from_secs(5) {
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(PgDb {
            url: format!(
                "host=127.0.0.1 port={} user=postgres dbname={name}",
                self.port
            ),
            name,
            cluster: self,
        })
    }
}

impl PgDb {
    /// A new database on this process's cluster.
    pub fn new() -> Result<Self> {
        PgCluster::shared()?.database()
    }

    /// A copy of this database (no one may be connected to it).
    pub fn copy(&self) -> Result<PgDb> {
        self.cluster.create(Some(&self.name))
    }

    /// The server's port on 127.0.0.1 (and `localhost`).
    pub fn port(&self) -> u16 {
        self.cluster.port
    }

    /// Its cluster (e.g. to stop it).
    pub fn cluster(&self) -> &'static PgCluster {
        self.cluster
    }

    /// The CA of the server's TLS certificate, which names `localhost` only.
    pub fn tls_ca(&self) -> &std::path::Path {
        &self.cluster.tls_ca
    }

    /// Runs SQL in this database (psql, superuser): for tampering and checks.
    pub fn psql(&self, sql: &str) -> Result<String> {
        self.cluster.psql(&self.name, sql)
    }

    /// Runs `SELECT 1` in this database with psql (libpq) connecting by
    /// `conninfo` (e.g. `host=localhost sslmode=verify-full sslrootcert=…`;
    /// port, user and dbname are added): libpq as an oracle for TLS checks.
    pub fn libpq_connects(&self, conninfo: &str) -> Result<()> {
        let out = Command::new(self.cluster.bin.join("psql"))
            .arg(format!(
                "{conninfo} port={} user=postgres dbname={}",
                self.cluster.port, self.name
            ))
            .args(["-X", "-q", "-A", "-t", "-c", "SELECT 1"])
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    /// `[storage]` for a verifier config file.
    pub fn storage_toml(&self) -> String {
        format!(
            "[storage]\nbackend = \"postgres\"\nurl = \"{}\"\n",
            self.url
        )
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

//! The Debian packages of the verifier and the attestor (cargo-deb, metadata in
//! their Cargo.toml, unit, config and maintainer scripts in their `debian/`):
//! packaged from the binaries `cargo build --workspace --bins` made, installed
//! with dpkg on this machine, their units checked with `systemd-analyze
//! verify`, the installed verifier started from its unit's `ExecStart` line as
//! the unit's user on the packaged config (adapted only where a test must: a
//! free port, the test's EK CA, a policy), a swtpm node registered, enrolled
//! and attested by the installed attestor's agent started the same way; then
//! an upgrade (config and TLS material kept), a remove (config and state
//! kept) and a purge, which must leave nothing but the system users.
//!
//! systemd is not PID 1 here, so the unit's sandbox is not applied; what the
//! test takes from the unit is its command line, user, groups, capabilities,
//! no-new-privileges, umask, environment and runtime directory.
//!
//! Needs root, dpkg, cargo-deb, systemd-analyze and setpriv (the test command
//! installs them); it fails, never skips, without them. Only this test uses
//! dpkg; a lock keeps two runs apart, and a run first purges what an earlier
//! failed run of it left installed (never a package it did not build).

use std::fs::File;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use assay_tests::{bin, output_text, Swtpm, TestCa};

const VERIFIER: &str = "assay-verifier";
const ATTESTOR: &str = "assay-attestor";
/// The Debian revision of the test's builds: `~` sorts before a release's
/// `-1`, and it marks an installed package as this test's.
const REVISION: &str = "1~assaytest";
const UPGRADE_REVISION: &str = "2~assaytest";
const VERIFIER_TOML: &str = "/etc/assay/verifier.toml";
const ATTESTOR_TOML: &str = "/etc/assay/attestor.toml";
const VERIFIER_TLS: &str = "/var/lib/assay-verifier/tls";
/// What the packages and their services create beside their file lists;
/// a purge removes all of it.
const STATE_PATHS: [&str; 4] = [
    "/etc/assay",
    "/var/lib/assay-verifier",
    "/var/lib/assay-attestor",
    "/run/assay-attestor",
];
/// Where systemd and deb-systemd-helper keep enablement and masks.
const SYSTEMD_STATE: [&str; 3] = [
    "/etc/systemd/system",
    "/var/lib/systemd/deb-systemd-helper-enabled",
    "/var/lib/systemd/deb-systemd-helper-masked",
];
const NODE_ID: &str = "pkg-node";

#[test]
fn packages_install_serve_attest_upgrade_and_purge_clean() -> Result<()> {
    let started = Instant::now();
    preflight()?;
    let _lock = host_lock()?;
    purge_leftovers()?;
    let work = tempfile::Builder::new()
        .prefix("assay-packages-")
        .tempdir()?;
    // The service users read the test's EK CA and verifier CA from here.
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755))?;
    let debs = build_debs(work.path())?;
    let mut installed = Installed::default();
    dpkg(&["-i", path_str(&debs.verifier)?, path_str(&debs.attestor)?])?;
    installed.0 = true;
    check_installed(&debs)?;
    let verifier_unit = Unit::installed(VERIFIER)?;
    let attestor_unit = Unit::installed(ATTESTOR)?;
    check_hardening(&verifier_unit, &attestor_unit)?;
    // As an operator would; the purge must undo it.
    run(Command::new("systemctl").args(["enable", VERIFIER, ATTESTOR]))?;
    for pkg in [VERIFIER, ATTESTOR] {
        let wants = format!("/etc/systemd/system/multi-user.target.wants/{pkg}.service");
        ensure!(
            Path::new(&wants).symlink_metadata().is_ok(),
            "systemctl enable made no {wants}"
        );
    }
    refuses_to_start_unconfigured(&verifier_unit, &attestor_unit, work.path())?;

    let tpm = Swtpm::start()?;
    let verifier_config = configure_verifier(work.path())?;
    let mut verifier = Service::start(&verifier_unit, work.path())?;
    let operator = client_material(work.path())?;
    configure_attestor(work.path(), &verifier.url, &tpm)?;
    register_node(&attestor_unit, &verifier, &operator, work.path())?;
    agent_attests_once(&attestor_unit, &verifier, work.path())?;
    verifier.stop()?;

    upgrade_keeps_config_and_state(&debs, &verifier_config)?;
    remove_keeps_config_and_state()?;
    purge_leaves_only_the_users(&debs)?;
    installed.0 = false;
    println!("packages test: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The tools the test needs, or an error saying how to get them.
fn preflight() -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    ensure!(
        status.lines().any(|l| l.starts_with("Uid:\t0\t")),
        "the packages test installs .deb files with dpkg: run it as root"
    );
    for (tool, args, hint) in [
        (
            cargo(),
            &["deb", "--version"][..],
            "cargo install --locked cargo-deb (tests/install-deps.sh does)",
        ),
        ("dpkg".into(), &["--version"][..], "a Debian system"),
        (
            "systemd-analyze".into(),
            &["--version"][..],
            "apt-get install systemd",
        ),
        (
            "setpriv".into(),
            &["--version"][..],
            "apt-get install util-linux",
        ),
    ] {
        let ok = Command::new(&tool)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ensure!(
            ok,
            "{} {} failed: {hint}",
            tool.to_string_lossy(),
            args.join(" ")
        );
    }
    Ok(())
}

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// One run of this test per machine at a time (dpkg's own lock fails, not waits).
fn host_lock() -> Result<File> {
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/lock/assay-packages-test.lock")?;
    f.lock()?;
    Ok(f)
}

/// The version of `pkg` dpkg knows as installed or with config files left, if any.
fn dpkg_version(pkg: &str) -> Result<Option<String>> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}|${Version}", pkg])
        .output()?;
    if !out.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, version) = text.split_once('|').context("dpkg-query output")?;
    Ok((!status.starts_with("un") && !status.starts_with("pn")).then(|| version.to_string()))
}

/// Purges what an earlier run of this test left installed; refuses to touch
/// anything else.
fn purge_leftovers() -> Result<()> {
    for pkg in [VERIFIER, ATTESTOR] {
        match dpkg_version(pkg)? {
            Some(v) if v.ends_with("~assaytest") => {
                println!("purging {pkg} {v}, left by an earlier run");
                dpkg(&["--purge", pkg])?;
            }
            Some(v) => bail!(
                "{pkg} {v} is installed and is not this test's build: the test will not purge it; \
                 run the test on another machine or remove it yourself"
            ),
            None => {}
        }
    }
    for p in STATE_PATHS {
        ensure!(
            !Path::new(p).exists(),
            "{p} exists while no Assay package is installed (left by a manual \
             `assay-verifier init`, or by a purge that failed): move it away; \
             the test asserts that a purge leaves no such path"
        );
    }
    Ok(())
}

/// The .deb files: both packages at [`REVISION`], the verifier again at [`UPGRADE_REVISION`].
struct Debs {
    verifier: PathBuf,
    attestor: PathBuf,
    verifier_upgrade: PathBuf,
}

/// Packages the debug binaries already built (no release build): cargo-deb
/// takes `target/release/<bin>` from its target dir, which here is a folder
/// of links to them. Stripped, so each .deb is a few MB.
fn build_debs(work: &Path) -> Result<Debs> {
    let target = work.join("target");
    std::fs::create_dir_all(target.join("release"))?;
    for name in [VERIFIER, ATTESTOR] {
        std::os::unix::fs::symlink(bin(name)?, target.join("release").join(name))?;
    }
    let out_dir = work.join("debs");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the workspace")?;
    let deb = |pkg: &str, revision: &str| -> Result<PathBuf> {
        let out = run(Command::new(cargo())
            .args(["deb", "--locked", "--no-build", "--fast", "-p", pkg])
            .args(["--deb-revision", revision, "-o"])
            .arg(&out_dir)
            .current_dir(workspace)
            .env("CARGO_TARGET_DIR", &target))?;
        let path = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .map(PathBuf::from)
            .context("cargo deb printed no path")?;
        ensure!(path.is_file(), "cargo deb: no {}", path.display());
        Ok(path)
    };
    let verifier = deb(VERIFIER, REVISION)?;
    let attestor = deb(ATTESTOR, REVISION)?;
    // The upgrade's package (cargo-deb names the file by version).
    let verifier_upgrade = deb(VERIFIER, UPGRADE_REVISION)?;
    ensure!(
        verifier_upgrade != verifier,
        "the upgrade overwrote the first build"
    );
    for d in [&verifier, &attestor] {
        let listing = run(Command::new("dpkg-deb").arg("-c").arg(d))?;
        println!(
            "dpkg-deb -c {}\n{}",
            d.display(),
            String::from_utf8_lossy(&listing.stdout)
        );
    }
    Ok(Debs {
        verifier,
        attestor,
        verifier_upgrade,
    })
}

/// The files (not directories) a .deb holds, as absolute paths; and its
/// directories that are its own (named for Assay).
fn deb_paths(deb: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let out = run(Command::new("dpkg-deb").arg("-c").arg(deb))?;
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mode = line.split_whitespace().next().unwrap_or_default();
        // `-rw-r--r-- 0/0 1391 2026-01-01 00:00 ./etc/assay/attestor.toml`
        let Some(name) = line.split_whitespace().nth(5) else {
            continue;
        };
        let path = PathBuf::from(name.trim_start_matches('.'));
        if mode.starts_with('d') {
            if name.contains("assay") {
                dirs.push(path);
            }
        } else {
            files.push(path);
        }
    }
    Ok((files, dirs))
}

/// Undoes the installation if the test stops half-way (purge is what the
/// next run would do first anyway).
#[derive(Default)]
struct Installed(bool);

impl Drop for Installed {
    fn drop(&mut self) {
        if self.0 {
            let _ = dpkg(&["--purge", VERIFIER, ATTESTOR]);
        }
    }
}

fn dpkg(args: &[&str]) -> Result<Output> {
    run(Command::new("dpkg")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null()))
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().context("a non-UTF-8 path")
}

fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        output_text(&out)
    );
    Ok(out)
}

/// The packaged files are where they belong, the configs are conffiles, the
/// users exist, and `systemd-analyze verify` says nothing about the units.
fn check_installed(debs: &Debs) -> Result<()> {
    for (pkg, deb, conffile) in [
        (VERIFIER, &debs.verifier, VERIFIER_TOML),
        (ATTESTOR, &debs.attestor, ATTESTOR_TOML),
    ] {
        let (files, _) = deb_paths(deb)?;
        for want in [
            format!("/usr/bin/{pkg}"),
            format!("/usr/lib/systemd/system/{pkg}.service"),
            conffile.to_string(),
            format!("/usr/share/doc/{pkg}/copyright"),
        ] {
            ensure!(
                files.contains(&PathBuf::from(&want)),
                "{pkg}: no {want} in {files:?}"
            );
        }
        let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", pkg]))?;
        let conffiles = String::from_utf8_lossy(&conffiles.stdout).into_owned();
        ensure!(
            conffiles.contains(conffile),
            "{pkg}: conffiles {conffiles:?}"
        );
        let passwd = run(Command::new("getent").args(["passwd", pkg]))?;
        let passwd = String::from_utf8_lossy(&passwd.stdout).into_owned();
        let fields: Vec<&str> = passwd.trim().split(':').collect();
        let uid: u32 = fields.get(2).context("passwd uid")?.parse()?;
        ensure!(uid < 1000, "{pkg}: not a system user: {passwd}");
        ensure!(
            fields.get(5) == Some(&format!("/var/lib/{pkg}").as_str())
                && fields.get(6) == Some(&"/usr/sbin/nologin"),
            "{pkg}: home or shell: {passwd}"
        );
        let unit = format!("/usr/lib/systemd/system/{pkg}.service");
        let out = Command::new("systemd-analyze")
            .args(["verify", &unit])
            .output()?;
        ensure!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "systemd-analyze verify {unit}: {}\n{}",
            out.status,
            output_text(&out)
        );
    }
    let mode = std::fs::metadata(VERIFIER_TLS)?.permissions().mode() & 0o777;
    ensure!(mode == 0o700, "{VERIFIER_TLS}: mode {mode:o}");
    for f in [
        "ca.pem",
        "server.pem",
        "server.key",
        "clients-ca.pem",
        "clients-ca.key",
    ] {
        ensure!(
            Path::new(VERIFIER_TLS).join(f).is_file(),
            "postinst wrote no {f}"
        );
    }
    Ok(())
}

/// An installed unit's `[Service]` settings (the units are plain: one
/// setting a line, no quoting, no continuation lines).
struct Unit {
    path: PathBuf,
    service: Vec<(String, String)>,
}

impl Unit {
    fn installed(name: &str) -> Result<Self> {
        let path = PathBuf::from(format!("/usr/lib/systemd/system/{name}.service"));
        let text = std::fs::read_to_string(&path)?;
        let mut section = "";
        let mut service = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                section = line;
                continue;
            }
            ensure!(
                !line.ends_with('\\'),
                "{}: a continuation line",
                path.display()
            );
            if section == "[Service]" {
                let (k, v) = line.split_once('=').context("a setting")?;
                service.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        Ok(Self { path, service })
    }

    /// Every value of `key`, in order (an empty assignment resets the list, as in systemd).
    fn values(&self, key: &str) -> Vec<&str> {
        let mut out = Vec::new();
        for (k, v) in &self.service {
            if k == key {
                if v.is_empty() {
                    out.clear();
                } else {
                    out.extend(v.split_whitespace());
                }
            }
        }
        out
    }

    fn one(&self, key: &str) -> Result<&str> {
        self.service
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .with_context(|| format!("{}: no {key}=", self.path.display()))
    }

    fn exec_start(&self) -> Result<Vec<&str>> {
        let line = self.one("ExecStart")?;
        ensure!(
            line.starts_with('/') && !line.contains(['"', '\'', '$']),
            "{}: ExecStart={line}: the test runs plain absolute command lines only",
            self.path.display()
        );
        Ok(line.split_whitespace().collect())
    }

    /// `argv` as this unit's service runs it: its User, Group,
    /// SupplementaryGroups, capabilities, NoNewPrivileges, UMask,
    /// Environment and WorkingDirectory (/), through setpriv.
    fn command(&self, argv: &[&str]) -> Result<Command> {
        let caps = |key: &str| -> String {
            let v = self.values(key);
            let names: Vec<String> = v
                .iter()
                .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
                .collect();
            names.join(",")
        };
        let mut cmd = Command::new("/bin/sh");
        cmd.args([
            "-c",
            "umask \"$0\" && exec \"$@\"",
            self.one("UMask")?,
            "setpriv",
        ])
        .arg(format!("--reuid={}", self.one("User")?))
        .arg(format!("--regid={}", self.one("Group")?));
        match self.values("SupplementaryGroups").join(",") {
            g if g.is_empty() => cmd.arg("--clear-groups"),
            g => cmd.arg(format!("--groups={g}")),
        };
        let bounding = caps("CapabilityBoundingSet");
        cmd.arg(format!(
            "--bounding-set=-all{}{bounding}",
            if bounding.is_empty() { "" } else { "," }
        ));
        let ambient = caps("AmbientCapabilities");
        if !ambient.is_empty() {
            cmd.arg(format!("--inh-caps={ambient}"))
                .arg(format!("--ambient-caps={ambient}"));
        }
        if self.one("NoNewPrivileges")? == "yes" {
            cmd.arg("--no-new-privs");
        }
        cmd.arg("--").args(argv).env_clear().env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
        for kv in self.values("Environment") {
            let (k, v) = kv.split_once('=').context("Environment=K=V")?;
            cmd.env(k, v);
        }
        cmd.current_dir("/").stdin(Stdio::null());
        Ok(cmd)
    }

    /// Creates the unit's RuntimeDirectory= as systemd would before a start.
    fn make_runtime_directory(&self) -> Result<()> {
        for name in self.values("RuntimeDirectory") {
            let dir = Path::new("/run").join(name);
            std::fs::create_dir_all(&dir)?;
            let mode = self.one("RuntimeDirectoryMode").unwrap_or("0755");
            let mode = u32::from_str_radix(mode, 8)?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))?;
            let owner = format!("{}:{}", self.one("User")?, self.one("Group")?);
            run(Command::new("chown").arg(&owner).arg(&dir))?;
        }
        Ok(())
    }
}

/// What issue #21 asks of the units, read back from the installed files.
fn check_hardening(verifier: &Unit, attestor: &Unit) -> Result<()> {
    for (unit, user) in [(verifier, VERIFIER), (attestor, ATTESTOR)] {
        let p = unit.path.display();
        for (key, want) in [
            ("User", user),
            ("Group", user),
            ("StateDirectory", user),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("RestrictSUIDSGID", "yes"),
            ("SystemCallArchitectures", "native"),
        ] {
            ensure!(
                unit.one(key)? == want,
                "{p}: {key}={} (want {want})",
                unit.one(key)?
            );
        }
    }
    let p = verifier.path.display();
    ensure!(
        verifier.values("CapabilityBoundingSet").is_empty(),
        "{p}: capabilities"
    );
    ensure!(
        verifier.values("AmbientCapabilities").is_empty(),
        "{p}: ambient capabilities"
    );
    ensure!(
        verifier.one("PrivateDevices")? == "yes",
        "{p}: PrivateDevices"
    );
    let p = attestor.path.display();
    ensure!(
        attestor.values("SupplementaryGroups") == ["tss"],
        "{p}: SupplementaryGroups"
    );
    ensure!(
        attestor.one("DevicePolicy")? == "closed",
        "{p}: DevicePolicy"
    );
    ensure!(
        attestor.values("DeviceAllow") == ["/dev/tpmrm0", "rw"],
        "{p}: DeviceAllow"
    );
    ensure!(
        attestor.values("CapabilityBoundingSet") == ["CAP_DAC_READ_SEARCH"]
            && attestor.values("AmbientCapabilities") == ["CAP_DAC_READ_SEARCH"],
        "{p}: capabilities"
    );
    ensure!(
        attestor.one("RuntimeDirectoryPreserve")? == "yes",
        "{p}: RuntimeDirectoryPreserve"
    );
    Ok(())
}

/// Runs `cmd` with stdout and stderr in files under `work`, killing it after
/// `limit`; its exit status and output.
fn run_bounded(
    mut cmd: Command,
    work: &Path,
    name: &str,
    limit: Duration,
) -> Result<(ExitStatus, String, String)> {
    let (out, err) = (
        work.join(format!("{name}.out")),
        work.join(format!("{name}.err")),
    );
    let mut child = cmd
        .stdout(File::create(&out)?)
        .stderr(File::create(&err)?)
        .spawn()?;
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{name}: still running after {limit:?}:\n{}",
                std::fs::read_to_string(&err)?
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ok((
        status,
        std::fs::read_to_string(out)?,
        std::fs::read_to_string(err)?,
    ))
}

/// The packaged configs as installed: neither service starts, and each says why.
fn refuses_to_start_unconfigured(verifier: &Unit, attestor: &Unit, work: &Path) -> Result<()> {
    let cmd = verifier.command(&verifier.exec_start()?)?;
    let (status, _, err) =
        run_bounded(cmd, work, "verifier-unconfigured", Duration::from_secs(30))?;
    ensure!(
        !status.success() && err.contains("no policy") && err.contains("`policy = "),
        "the unconfigured verifier: {status}\n{err}"
    );
    attestor.make_runtime_directory()?;
    let cmd = attestor.command(&attestor.exec_start()?)?;
    let (status, _, err) =
        run_bounded(cmd, work, "attestor-unconfigured", Duration::from_secs(30))?;
    ensure!(
        status.code() == Some(2) && err.contains("config key `verifier`"),
        "the unconfigured attestor: {status}\n{err}"
    );
    Ok(())
}

/// `text` with the one line `old` replaced by `new`.
fn replace_line(text: &str, old: &str, new: &str) -> Result<String> {
    let n = text.lines().filter(|l| *l == old).count();
    ensure!(
        n == 1,
        "the packaged config has {n} lines `{old}` (the test adapts exactly one)"
    );
    Ok(text
        .lines()
        .map(|l| if l == old { new } else { l })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n")
}

/// A copy of `from` at `to`, readable by the service users.
fn copy_readable(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o644))?;
    Ok(())
}

/// The packaged verifier.toml with a free port (the verifier prints the one
/// it got), the swtpm demo policy the package ships and the test's EK CA;
/// the rest (data_dir, TLS from postinst, inventory enrollment) as packaged.
/// Returns the text written.
fn configure_verifier(work: &Path) -> Result<String> {
    let ca = TestCa::shared();
    let (root, issuer) = (work.join("ek-root.pem"), work.join("ek-issuer.pem"));
    copy_readable(&ca.root_cert_path(), &root)?;
    copy_readable(&ca.issuer_cert_path(), &issuer)?;
    let text = std::fs::read_to_string(VERIFIER_TOML)?;
    let text = replace_line(
        &text,
        "listen = \"127.0.0.1:7443\"",
        "listen = \"127.0.0.1:0\"",
    )?;
    let text = replace_line(
        &text,
        "# policy = \"/etc/assay/policy.toml\"",
        "policy = \"/usr/share/assay-verifier/policies/swtpm-demo.toml\"",
    )?;
    let text = replace_line(
        &text,
        "# ek_roots = [\"builtin\", \"/etc/assay/ek-roots/own-ca.pem\"]",
        &format!("ek_roots = [\"{}\"]", root.display()),
    )?;
    let text = replace_line(
        &text,
        "# ek_intermediates = [\"/etc/assay/ek-roots/own-ica.pem\"]",
        &format!("ek_intermediates = [\"{}\"]", issuer.display()),
    )?;
    std::fs::write(VERIFIER_TOML, &text)?;
    Ok(text)
}

/// The installed verifier, started from its unit; stopped (SIGKILL) on drop.
struct Service {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Service {
    fn start(unit: &Unit, work: &Path) -> Result<Self> {
        let log = work.join("verifier.log");
        let mut child = unit
            .command(&unit.exec_start()?)?
            .stdout(Stdio::piped())
            .stderr(File::create(&log)?)
            .spawn()?;
        let rx = assay_tests::procs::stdout_lines(&mut child)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        let url = format!("https://{addr}");
                        return Ok(Self { child, url, log });
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!(
                        "the installed verifier did not start:\n{}",
                        std::fs::read_to_string(&log)?
                    );
                }
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as `systemctl stop` sends: it must exit 0 within 10 s.
    fn stop(&mut self) -> Result<()> {
        run(Command::new("kill").args(["-TERM", &self.child.id().to_string()]))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait()? {
                ensure!(
                    s.success(),
                    "the verifier exited with {s} on SIGTERM:\n{}",
                    self.log()
                );
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the verifier ignored SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a node and an operator take from the verifier host: its CA
/// certificate (copied out of the state dir, as the README says) and an
/// operator certificate from `assay-verifier client-cert`.
struct Operator {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn client_material(work: &Path) -> Result<Operator> {
    let ca = work.join("verifier-ca.pem");
    copy_readable(&Path::new(VERIFIER_TLS).join("ca.pem"), &ca)?;
    let prefix = work.join("operator");
    run(Command::new("/usr/bin/assay-verifier")
        .args(["client-cert", "--dir", VERIFIER_TLS, "--role", "operator"])
        .args(["--name", "packages-test-operator", "--out"])
        .arg(&prefix))?;
    Ok(Operator {
        ca,
        cert: prefix.with_extension("pem"),
        key: prefix.with_extension("key"),
    })
}

/// The packaged attestor.toml pointed at the verifier, its CA and the swtpm.
fn configure_attestor(work: &Path, url: &str, tpm: &Swtpm) -> Result<()> {
    let text = std::fs::read_to_string(ATTESTOR_TOML)?;
    let text = replace_line(
        &text,
        "# verifier = \"https://verifier.example.com:7443\"",
        &format!("verifier = \"{url}\""),
    )?;
    let text = replace_line(
        &text,
        "# ca = \"/etc/assay/verifier-ca.pem\"",
        &format!("ca = \"{}\"", work.join("verifier-ca.pem").display()),
    )?;
    let text = replace_line(
        &text,
        "# node_id = \"node-17\"",
        &format!("node_id = \"{NODE_ID}\""),
    )?;
    let text = replace_line(
        &text,
        "tcti = \"device:/dev/tpmrm0\"",
        &format!("tcti = \"{}\"", tpm.tcti()),
    )?;
    std::fs::write(ATTESTOR_TOML, text)?;
    Ok(())
}

/// The packaged verifier enrolls in inventory mode: the operator registers
/// the node's EK (`assay-attestor ek` on the node, `node add` on the verifier).
fn register_node(attestor: &Unit, v: &Service, op: &Operator, work: &Path) -> Result<()> {
    let cmd = attestor.command(&[
        "/usr/bin/assay-attestor",
        "ek",
        "--config",
        ATTESTOR_TOML,
        "--output",
        "json",
    ])?;
    let (status, out, err) = run_bounded(cmd, work, "attestor-ek", Duration::from_secs(30))?;
    ensure!(
        status.success(),
        "assay-attestor ek: {status}\n{out}\n{err}"
    );
    let ek: serde_json::Value = serde_json::from_str(out.trim())?;
    let sha = ek["ek_cert_sha256"].as_str().context("no ek_cert_sha256")?;
    run(Command::new("/usr/bin/assay-verifier")
        .args(["node", "add", NODE_ID, "--ek-sha256", sha])
        .env("ASSAY_VERIFIER", &v.url)
        .env("ASSAY_CA", &op.ca)
        .env("ASSAY_CLIENT_CERT", &op.cert)
        .env("ASSAY_CLIENT_KEY", &op.key))?;
    Ok(())
}

/// The installed agent, from its unit's command line (plus `--max-attestations
/// 1`): it enrolls and attests, and the verifier trusts it.
fn agent_attests_once(attestor: &Unit, v: &Service, work: &Path) -> Result<()> {
    let mut argv = attestor.exec_start()?;
    argv.extend(["--max-attestations", "1"]);
    let (status, out, err) = run_bounded(
        attestor.command(&argv)?,
        work,
        "agent",
        Duration::from_secs(60),
    )?;
    ensure!(
        status.success(),
        "the agent: {status}\n{out}\n{err}\n{}",
        v.log()
    );
    let line: serde_json::Value = serde_json::from_str(out.lines().last().unwrap_or_default())
        .with_context(|| format!("the agent's line: {out}"))?;
    ensure!(
        line["trusted"] == true,
        "not trusted: {line}\n{err}\n{}",
        v.log()
    );
    // Written by the services as their users, where their units say.
    owned_by("/var/lib/assay-attestor/enrollment.json", ATTESTOR)?;
    owned_by("/run/assay-attestor/measurements.cel", ATTESTOR)?;
    owned_by("/var/lib/assay-verifier/db", VERIFIER)?;
    owned_by("/var/lib/assay-verifier/token-signing-key.pem", VERIFIER)?;
    Ok(())
}

/// `path` exists and belongs to the system user `user`.
fn owned_by(path: &str, user: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let uid = std::fs::metadata(path)
        .with_context(|| format!("{path}: missing"))?
        .uid();
    let id = run(Command::new("id").args(["-u", user]))?;
    let want: u32 = String::from_utf8_lossy(&id.stdout).trim().parse()?;
    ensure!(
        uid == want,
        "{path}: owned by uid {uid}, not {user} ({want})"
    );
    Ok(())
}

/// Upgrading the verifier keeps the edited conffile and the TLS material.
fn upgrade_keeps_config_and_state(debs: &Debs, config: &str) -> Result<()> {
    let cert = std::fs::read(Path::new(VERIFIER_TLS).join("server.pem"))?;
    dpkg(&["-i", path_str(&debs.verifier_upgrade)?])?;
    let version = dpkg_version(VERIFIER)?.unwrap_or_default();
    ensure!(
        version.ends_with(UPGRADE_REVISION),
        "after the upgrade: {version}"
    );
    ensure!(
        std::fs::read_to_string(VERIFIER_TOML)? == config,
        "the upgrade replaced the edited {VERIFIER_TOML}"
    );
    ensure!(
        std::fs::read(Path::new(VERIFIER_TLS).join("server.pem"))? == cert,
        "the upgrade made new TLS material"
    );
    Ok(())
}

/// `dpkg -r`: the programs go; the configuration and the state stay.
fn remove_keeps_config_and_state() -> Result<()> {
    dpkg(&["-r", VERIFIER, ATTESTOR])?;
    for p in [
        VERIFIER_TOML,
        ATTESTOR_TOML,
        "/var/lib/assay-verifier/tls/server.key",
        "/var/lib/assay-attestor/enrollment.json",
    ] {
        ensure!(Path::new(p).exists(), "dpkg -r removed {p}");
    }
    for p in ["/usr/bin/assay-verifier", "/usr/bin/assay-attestor"] {
        ensure!(!Path::new(p).exists(), "dpkg -r left {p}");
    }
    Ok(())
}

/// Every path under `dir` whose name mentions Assay.
fn assay_paths_under(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if e.file_name().to_string_lossy().contains("assay") {
            found.push(path.clone());
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            assay_paths_under(&path, found);
        }
    }
}

/// `dpkg --purge`: no packaged file, conffile, unit state, state or runtime
/// directory stays; what policy keeps, the system users and their groups, does.
fn purge_leaves_only_the_users(debs: &Debs) -> Result<()> {
    dpkg(&["--purge", VERIFIER, ATTESTOR])?;
    let mut left = Vec::new();
    for pkg in [VERIFIER, ATTESTOR] {
        if let Some(v) = dpkg_version(pkg)? {
            left.push(PathBuf::from(format!("(dpkg still knows {pkg} {v})")));
        }
    }
    for deb in [&debs.verifier, &debs.attestor] {
        let (files, dirs) = deb_paths(deb)?;
        left.extend(
            files
                .into_iter()
                .chain(dirs)
                .filter(|p| p.symlink_metadata().is_ok()),
        );
    }
    left.extend(STATE_PATHS.iter().map(PathBuf::from).filter(|p| p.exists()));
    for dir in SYSTEMD_STATE {
        assay_paths_under(Path::new(dir), &mut left);
    }
    assay_paths_under(Path::new("/var/lib/dpkg/info"), &mut left);
    ensure!(left.is_empty(), "dpkg --purge left: {left:?}");
    // Kept on purge, as Debian does with system users (README).
    for name in [VERIFIER, ATTESTOR] {
        run(Command::new("getent").args(["passwd", name]))
            .with_context(|| format!("the system user {name} is kept on purge"))?;
        run(Command::new("getent").args(["group", name]))
            .with_context(|| format!("the group {name} is kept on purge"))?;
    }
    println!("kept after purge, by design: the system users and groups {VERIFIER}, {ATTESTOR}");
    Ok(())
}

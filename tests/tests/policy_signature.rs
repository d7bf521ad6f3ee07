//! Peer oracle for policy signatures: the real `minisign` CLI (Debian package
//! `minisign`, 0.11; tests/install-deps.sh installs it), a client Assay did not
//! write. Its keys and signatures pass `assay_verifier::policy_signature`, and
//! what Assay signs (the library and `assay-verifier policy sign`) passes
//! `minisign -V`. Run `cargo build -p assay-verifier --bins` first: the command
//! tests run the built binary.
//!
//! The CLI's password-encrypted keys ask scrypt for 1 GiB: each use of one
//! here takes seconds, so they are few.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};
use assay_verifier::policy_signature::{sign, PolicyKeys, SignatureError};

const PASSWORD_ENV: &str = "ASSAY_POLICY_KEY_PASSWORD";

/// Runs `minisign ARGS` with `stdin` written to its standard input. Missing
/// minisign fails the test: it is a declared test dependency.
fn minisign(args: &[&str], stdin: &str) -> Result<Output> {
    let mut child = match Command::new("minisign")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "the minisign CLI is not installed: run tests/install-deps.sh \
             (Debian package minisign)"
        ),
        Err(e) => return Err(e).context("running minisign"),
    };
    // A closed stdin (the CLI did not read it all) is not an error here.
    let _ = child
        .stdin
        .take()
        .context("minisign's stdin")?
        .write_all(stdin.as_bytes());
    Ok(child.wait_with_output()?)
}

/// `minisign ARGS`, which must succeed.
fn minisign_ok(args: &[&str], stdin: &str) -> Result<Output> {
    let out = minisign(args, stdin)?;
    if !out.status.success() {
        bail!(
            "minisign {args:?} failed: {}",
            assay_tests::output_text(&out)
        );
    }
    Ok(out)
}

/// The repository's demo policy, a valid one to sign.
fn demo_policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/swtpm-demo.toml")
}

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    /// A directory holding a copy of the demo policy as `policy.toml`.
    fn new() -> Result<Dir> {
        let dir = tempfile::tempdir()?;
        let demo = demo_policy();
        std::fs::copy(&demo, dir.path().join("policy.toml"))
            .with_context(|| format!("copying {}", demo.display()))?;
        Ok(Dir { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn read(&self, name: &str) -> Result<String> {
        std::fs::read_to_string(self.path(name)).with_context(|| format!("reading {name}"))
    }

    fn policy(&self) -> Result<Vec<u8>> {
        Ok(std::fs::read(self.path("policy.toml"))?)
    }

    /// `minisign -G -W`: an unencrypted key pair NAME.pub, NAME.key.
    fn keypair(&self, name: &str) -> Result<()> {
        minisign_ok(
            &[
                "-G",
                "-W",
                "-p",
                &self.s(&format!("{name}.pub")),
                "-s",
                &self.s(&format!("{name}.key")),
            ],
            "",
        )?;
        Ok(())
    }

    /// `minisign -G` with `password` given on stdin (twice, as it asks).
    fn encrypted_keypair(&self, name: &str, password: &str) -> Result<()> {
        minisign_ok(
            &[
                "-G",
                "-p",
                &self.s(&format!("{name}.pub")),
                "-s",
                &self.s(&format!("{name}.key")),
            ],
            &format!("{password}\n{password}\n"),
        )?;
        let key = self.read(&format!("{name}.key"))?;
        // Really encrypted: the kdf algorithm is scrypt ("Sc").
        assert!(
            key.lines().nth(1).is_some_and(|l| l.starts_with("RWRTY0")),
            "{key}"
        );
        Ok(())
    }

    /// The key id the CLI wrote in NAME.pub's comment, zero-padded to 16 digits.
    fn cli_key_id(&self, name: &str) -> Result<String> {
        let text = self.read(&format!("{name}.pub"))?;
        let hex = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("untrusted comment: minisign public key "))
            .context("minisign.pub's comment")?;
        Ok(format!("{:016X}", u64::from_str_radix(hex.trim(), 16)?))
    }

    fn keys(&self, names: &[&str]) -> Result<PolicyKeys> {
        let paths: Vec<PathBuf> = names
            .iter()
            .map(|n| self.path(&format!("{n}.pub")))
            .collect();
        PolicyKeys::load(&paths).map_err(anyhow::Error::msg)
    }

    /// `minisign -V -Q`: Ok(the trusted comment) or Err(what it said).
    fn cli_verify(&self, key: &str, sig: &str) -> Result<std::result::Result<String, String>> {
        let out = minisign(
            &[
                "-V",
                "-H",
                "-Q",
                "-p",
                &self.s(&format!("{key}.pub")),
                "-m",
                &self.s("policy.toml"),
                "-x",
                &self.s(sig),
            ],
            "",
        )?;
        Ok(if out.status.success() {
            Ok(String::from_utf8(out.stdout)?
                .trim_end_matches('\n')
                .to_string())
        } else {
            Err(assay_tests::output_text(&out))
        })
    }

    fn alter_policy(&self) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.path("policy.toml"))?;
        writeln!(f, "# altered")?;
        Ok(())
    }

    fn verifier(&self) -> Result<Command> {
        let mut c = Command::new(assay_tests::bin("assay-verifier")?);
        c.current_dir(self.dir.path()).env_remove(PASSWORD_ENV);
        Ok(c)
    }
}

/// The CLI signs (prehashed, its default) and Assay verifies, returning the
/// trusted comment the CLI wrote and the key id the CLI printed.
#[test]
fn minisign_cli_signature_verifies_with_assay() -> Result<()> {
    let d = Dir::new()?;
    d.keypair("op")?;
    d.keypair("other")?;
    let policy = d.s("policy.toml");
    minisign_ok(
        &[
            "-S",
            "-s",
            &d.s("op.key"),
            "-m",
            &policy,
            "-t",
            "change 1234: new firmware",
        ],
        "",
    )?;
    let keys = d.keys(&["op"])?;
    let sig = d.read("policy.toml.minisig")?;
    let v = keys
        .verify(&d.policy()?, &sig)
        .map_err(anyhow::Error::msg)?;
    assert_eq!(v.trusted_comment, "change 1234: new firmware");
    assert_eq!(v.key_id, d.cli_key_id("op")?);
    // Its default trusted comment (timestamp, file name, "hashed") as `-V -Q` prints it.
    minisign_ok(
        &[
            "-S",
            "-s",
            &d.s("op.key"),
            "-m",
            &policy,
            "-x",
            &d.s("default.minisig"),
        ],
        "",
    )?;
    let v = keys
        .verify(&d.policy()?, &d.read("default.minisig")?)
        .map_err(anyhow::Error::msg)?;
    assert_eq!(
        Ok(v.trusted_comment.clone()),
        d.cli_verify("op", "default.minisig")?
    );
    assert!(v.trusted_comment.contains("file:policy.toml"), "{v:?}");
    // Several keys configured: the right one is found.
    assert!(d.keys(&["other", "op"])?.verify(&d.policy()?, &sig).is_ok());
    // Only another key configured: refused, naming the signer's key id.
    assert_eq!(
        d.keys(&["other"])?.verify(&d.policy()?, &sig),
        Err(SignatureError::UnknownKey {
            key_id: d.cli_key_id("op")?
        })
    );
    // The legacy form (-l) is refused.
    minisign_ok(
        &[
            "-S",
            "-l",
            "-s",
            &d.s("op.key"),
            "-m",
            &policy,
            "-x",
            &d.s("legacy.minisig"),
        ],
        "",
    )?;
    assert!(matches!(
        keys.verify(&d.policy()?, &d.read("legacy.minisig")?),
        Err(SignatureError::Legacy { .. })
    ));
    // The altered policy is refused, by both.
    d.alter_policy()?;
    assert_eq!(
        keys.verify(&d.policy()?, &sig),
        Err(SignatureError::Mismatch {
            key_id: d.cli_key_id("op")?
        })
    );
    assert!(d.cli_verify("op", "policy.toml.minisig")?.is_err());
    Ok(())
}

/// Assay signs with the CLI's unencrypted key (`-W`: its checksum is left
/// zero) and the CLI verifies, requiring the prehashed form (-H).
#[test]
fn assay_signature_verifies_with_minisign_cli() -> Result<()> {
    let d = Dir::new()?;
    d.keypair("op")?;
    let s = sign(
        &d.policy()?,
        &d.path("op.key"),
        None,
        Some("approved\tby alice"),
    )
    .map_err(anyhow::Error::msg)?;
    assert_eq!(s.key_id, d.cli_key_id("op")?);
    std::fs::write(d.path("assay.minisig"), &s.minisig)?;
    assert_eq!(
        d.cli_verify("op", "assay.minisig")?,
        Ok("approved\tby alice".into())
    );
    // The default trusted comment.
    let s = sign(&d.policy()?, &d.path("op.key"), None, None).map_err(anyhow::Error::msg)?;
    std::fs::write(d.path("default.minisig"), &s.minisig)?;
    let comment = d
        .cli_verify("op", "default.minisig")?
        .map_err(anyhow::Error::msg)?;
    assert!(comment.starts_with("timestamp:"), "{comment}");
    // The CLI too refuses it for an altered policy.
    d.alter_policy()?;
    assert!(d.cli_verify("op", "assay.minisig")?.is_err());
    Ok(())
}

/// A key the CLI encrypted with a password (given on its stdin): Assay signs
/// with the right password, refuses a wrong one or none, never prompts.
#[test]
fn minisign_cli_encrypted_key_signs_only_with_its_password() -> Result<()> {
    let d = Dir::new()?;
    d.encrypted_keypair("op", "correct horse")?;
    let key = d.path("op.key");
    let e = sign(&d.policy()?, &key, None, None).unwrap_err();
    assert!(e.contains("encrypted, and no password was given"), "{e}");
    let e = sign(&d.policy()?, &key, Some("battery staple".into()), None).unwrap_err();
    assert!(e.contains("wrong password"), "{e}");
    let s = sign(
        &d.policy()?,
        &key,
        Some("correct horse".into()),
        Some("encrypted"),
    )
    .map_err(anyhow::Error::msg)?;
    std::fs::write(d.path("policy.toml.minisig"), &s.minisig)?;
    assert_eq!(
        d.cli_verify("op", "policy.toml.minisig")?,
        Ok("encrypted".into())
    );
    Ok(())
}

/// `assay-verifier policy sign` and `policy verify-signature`, end to end,
/// against the CLI's keys and `minisign -V`.
#[test]
fn policy_sign_and_verify_signature_commands() -> Result<()> {
    let d = Dir::new()?;
    d.keypair("op")?;
    d.keypair("other")?;
    let id = d.cli_key_id("op")?;

    // sign: FILE.minisig by default, says where it wrote and with which key.
    let out = d
        .verifier()?
        .args(["policy", "sign", "policy.toml", "--key", "op.key"])
        .output()?;
    let text = assay_tests::output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("wrote policy.toml.minisig"), "{text}");
    assert!(text.contains(&format!("with key {id}")), "{text}");
    // The default trusted comment is minisign's own form.
    let comment = d
        .cli_verify("op", "policy.toml.minisig")?
        .map_err(anyhow::Error::msg)?;
    assert!(
        comment.starts_with("timestamp:") && comment.ends_with("\tfile:policy.toml\thashed"),
        "{comment}"
    );

    // --output, --trusted-comment; signed by the CLI too, verified by the command.
    let out = d
        .verifier()?
        .args(["policy", "sign", "policy.toml", "--key", "op.key"])
        .args(["--output", "signed.sig", "--trusted-comment", "change 77"])
        .output()?;
    assert!(out.status.success(), "{}", assay_tests::output_text(&out));
    assert_eq!(d.cli_verify("op", "signed.sig")?, Ok("change 77".into()));
    minisign_ok(
        &[
            "-S",
            "-s",
            &d.s("op.key"),
            "-m",
            &d.s("policy.toml"),
            "-x",
            &d.s("cli.sig"),
            "-t",
            "by the cli",
        ],
        "",
    )?;
    let verify = |sig: &str, keys: &[&str]| -> Result<Output> {
        let mut c = d.verifier()?;
        c.args([
            "policy",
            "verify-signature",
            "policy.toml",
            "--signature",
            sig,
        ]);
        for k in keys {
            c.args(["--key", k]);
        }
        Ok(c.output()?)
    };
    for (sig, comment) in [("signed.sig", "change 77"), ("cli.sig", "by the cli")] {
        let out = verify(sig, &["other.pub", "op.pub"])?;
        let text = assay_tests::output_text(&out);
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains(&format!("good signature by key {id}")),
            "{text}"
        );
        assert!(
            text.contains(&format!("trusted comment: {comment}")),
            "{text}"
        );
    }
    // The default signature path, FILE.minisig.
    let out = d
        .verifier()?
        .args([
            "policy",
            "verify-signature",
            "policy.toml",
            "--key",
            "op.pub",
        ])
        .output()?;
    assert!(out.status.success(), "{}", assay_tests::output_text(&out));

    // Refused (exit 3): another key; garbage; an altered policy.
    let out = verify("signed.sig", &["other.pub"])?;
    let text = assay_tests::output_text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains(&id) && text.contains("not a configured"),
        "{text}"
    );
    std::fs::write(
        d.path("garbage.sig"),
        "untrusted comment: x\nnot a signature\n",
    )?;
    let out = verify("garbage.sig", &["op.pub"])?;
    let text = assay_tests::output_text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("malformed"), "{text}");
    let big = format!("untrusted comment: {}\n", "x".repeat(10_000));
    std::fs::write(d.path("big.sig"), big)?;
    let out = verify("big.sig", &["op.pub"])?;
    let text = assay_tests::output_text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("malformed: larger than 4096 bytes"), "{text}");
    // Bad usage (exit 2): a signature written over the policy itself.
    let out = d
        .verifier()?
        .args(["policy", "sign", "policy.toml", "--key", "op.key"])
        .args(["--output", "./policy.toml"])
        .output()?;
    let text = assay_tests::output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert_eq!(
        d.policy()?,
        std::fs::read(demo_policy())?,
        "the policy is intact"
    );
    // An error (exit 1): a key file that is not a key.
    let out = verify("signed.sig", &["policy.toml"])?;
    let text = assay_tests::output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("policy signing key policy.toml"), "{text}");
    d.alter_policy()?;
    let out = verify("cli.sig", &["op.pub"])?;
    let text = assay_tests::output_text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("does not match the policy text"), "{text}");
    Ok(())
}

/// `policy sign` with an encrypted key: the password from the environment or
/// from --password-file (which wins), never prompted for.
#[test]
fn policy_sign_command_takes_the_password_from_env_or_file() -> Result<()> {
    let d = Dir::new()?;
    d.encrypted_keypair("op", "s3cret pass")?;
    let sign_cmd = || -> Result<Command> {
        let mut c = d.verifier()?;
        c.args(["policy", "sign", "policy.toml", "--key", "op.key"])
            .stdin(Stdio::null());
        Ok(c)
    };
    // No password: an error that says how to give one (no prompt: stdin is null).
    let out = sign_cmd()?.output()?;
    let text = assay_tests::output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("no password was given") && text.contains(PASSWORD_ENV),
        "{text}"
    );
    // From the environment.
    let out = sign_cmd()?.env(PASSWORD_ENV, "s3cret pass").output()?;
    assert!(out.status.success(), "{}", assay_tests::output_text(&out));
    assert!(d.cli_verify("op", "policy.toml.minisig")?.is_ok());
    // --password-file over the environment: here a wrong one.
    std::fs::write(d.path("pw"), "not it\n")?;
    let out = sign_cmd()?
        .env(PASSWORD_ENV, "s3cret pass")
        .args(["--password-file", "pw", "--output", "second.sig"])
        .output()?;
    let text = assay_tests::output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("wrong password"), "{text}");
    assert!(!d.path("second.sig").exists());
    Ok(())
}

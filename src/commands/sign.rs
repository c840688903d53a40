//! `wasm-patch keygen`, `sign` and `verify`: ed25519 keys and signatures
//! for patch bundles.
//!
//! Owns the key files (`NAME.key`, secret, mode 0600, never overwritten
//! unless `--force`; `NAME.pub`, public) and the two commands on bundles.
//! `verify` goes through [`patch_format::TrustedKeys::verify`], which checks
//! the signature on the raw bytes before the manifest is parsed; it exits 0
//! only for an intact bundle signed by one of the given keys, and 1 with a
//! message otherwise.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use patch_format::{Bundle, PublicKey, SecretKey, TrustedKeys};

use super::diff::write_atomically;

/// Arguments of `wasm-patch keygen`.
#[derive(clap::Args, Debug)]
pub struct KeygenArgs {
    /// Writes NAME.key (secret, mode 0600) and NAME.pub.
    #[arg(short = 'o', long = "output", value_name = "NAME")]
    pub name: PathBuf,
    /// Overwrite existing key files.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `wasm-patch sign`.
#[derive(clap::Args, Debug)]
pub struct SignArgs {
    /// The bundle to sign (an existing signature is replaced).
    pub bundle: PathBuf,
    /// Secret key file (from `keygen`).
    #[arg(long, value_name = "NAME.key")]
    pub key: PathBuf,
    /// Where to write the signed bundle.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
}

/// Arguments of `wasm-patch verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The bundle to check.
    pub bundle: PathBuf,
    /// Trusted public key file (repeatable: any of them may have signed).
    #[arg(long = "pub", value_name = "NAME.pub", required = true)]
    pub public: Vec<PathBuf>,
}

/// `NAME` + `.ext` (kept even if NAME has a dot in it).
fn with_suffix(name: &Path, ext: &str) -> PathBuf {
    let mut s = name.as_os_str().to_owned();
    s.push(ext);
    PathBuf::from(s)
}

/// `keygen` entry point.
pub fn keygen(args: KeygenArgs) -> anyhow::Result<i32> {
    let secret_path = with_suffix(&args.name, ".key");
    let public_path = with_suffix(&args.name, ".pub");
    if !args.force {
        for p in [&secret_path, &public_path] {
            if p.exists() {
                anyhow::bail!(
                    "{} exists; refusing to overwrite a key (use --force)",
                    p.display()
                );
            }
        }
    }
    let key = SecretKey::generate()?;
    write_secret(&secret_path, key.to_text().as_bytes())?;
    std::fs::write(&public_path, key.public_key().to_text())
        .with_context(|| format!("writing {}", public_path.display()))?;
    println!(
        "wrote {} (secret, mode 0600) and {}; public key {}",
        secret_path.display(),
        public_path.display(),
        key.public_key()
    );
    Ok(0)
}

/// Creates the secret key file readable by its owner only, from the start
/// (not chmod after the fact, which would leave a window).
fn write_secret(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    #[cfg(unix)]
    {
        // `mode` applies only when the file is created; --force may reuse one.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// `sign` entry point.
pub fn sign(args: SignArgs) -> anyhow::Result<i32> {
    let text = std::fs::read_to_string(&args.key)
        .with_context(|| format!("reading {}", args.key.display()))?;
    let key = SecretKey::from_text(&text).with_context(|| format!("{}", args.key.display()))?;
    let bytes = std::fs::read(&args.bundle)
        .with_context(|| format!("reading {}", args.bundle.display()))?;
    let mut b = Bundle::parse(&bytes)
        .with_context(|| format!("{} is not a valid patch bundle", args.bundle.display()))?;
    b.sign(&key);
    write_atomically(&args.output, &b.to_bytes())?;
    println!(
        "signed bundle {} with key {}: wrote {}",
        b.bundle_id(),
        key.public_key(),
        args.output.display()
    );
    Ok(0)
}

/// `verify` entry point: 0 if signed by a given key and intact, else 1.
pub fn verify(args: VerifyArgs) -> anyhow::Result<i32> {
    let mut trusted = TrustedKeys::new();
    for p in &args.public {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        trusted.add(PublicKey::from_text(&text).with_context(|| format!("{}", p.display()))?);
    }
    let bytes = std::fs::read(&args.bundle)
        .with_context(|| format!("reading {}", args.bundle.display()))?;
    match trusted.verify(&bytes) {
        Ok(v) => {
            println!(
                "OK: bundle {} ({}) is intact and signed by trusted key {}",
                v.bundle_id(),
                args.bundle.display(),
                v.signer()
            );
            Ok(0)
        }
        Err(e) => {
            eprintln!("verification FAILED for {}: {e}", args.bundle.display());
            Ok(1)
        }
    }
}

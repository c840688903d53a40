//! Signatures: ed25519 over a bundle's canonical unsigned bytes, key files,
//! and the trusted-key check a host runs before it looks at anything else.
//!
//! Owns: [`Signature`] (the trailing `wasm-patch.signature` section),
//! [`SecretKey`] / [`PublicKey`] (and their text files), [`TrustedKeys`] and
//! [`VerifiedBundle`].
//!
//! The signed message is `SIGNATURE_DOMAIN || SHA-256(unsigned bytes)`; the
//! domain string keeps a bundle signature from being valid for anything else
//! signed with the same key. [`TrustedKeys::verify`] locates the signature by
//! walking section headers only (ids and sizes), checks it, and only then
//! parses the manifest: an untrusted bundle never reaches the parser.

use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::bundle::{hex, unhex, Bundle, SIGNATURE_SECTION};
use crate::error::FormatError;

/// Prefix of every signed message (domain separation).
pub const SIGNATURE_DOMAIN: &[u8] = b"wasm-patch bundle signature v1\0";
/// Algorithm byte for ed25519, the only one defined.
const ALG_ED25519: u8 = 1;
/// Size of the signature section's payload after its name.
const SIGNATURE_PAYLOAD_LEN: usize = 1 + 32 + 64;

const PUBLIC_KEY_LABEL: &str = "wasm-patch-ed25519-public-key:";
const SECRET_KEY_LABEL: &str = "wasm-patch-ed25519-secret-key:";

/// An ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// The key from its 32 bytes.
    ///
    /// # Errors
    /// [`FormatError::KeyFile`] if the bytes are not a valid point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, FormatError> {
        VerifyingKey::from_bytes(bytes)
            .map(PublicKey)
            .map_err(|_| FormatError::KeyFile("not a valid ed25519 public key".into()))
    }

    /// Its 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Lowercase hex of its bytes.
    pub fn to_hex(&self) -> String {
        hex(&self.0.to_bytes())
    }

    /// The content of a `.pub` file: one line, `wasm-patch-ed25519-public-key:<hex>`.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_KEY_LABEL}{}\n", self.to_hex())
    }

    /// Reads a `.pub` file's content.
    ///
    /// # Errors
    /// [`FormatError::KeyFile`] if it is not one.
    pub fn from_text(text: &str) -> Result<Self, FormatError> {
        let bytes = key_from_text(text, PUBLIC_KEY_LABEL, "public")?;
        Self::from_bytes(&bytes)
    }

    fn verify(&self, unsigned: &[u8], signature: &[u8; 64]) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(signature);
        self.0.verify_strict(&message(unsigned), &sig).is_ok()
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// An ed25519 secret (signing) key. Its `Debug` does not show the secret.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A new key from the operating system's random source.
    ///
    /// # Errors
    /// [`FormatError::KeyFile`] if the random source fails.
    pub fn generate() -> Result<Self, FormatError> {
        use rand_core::{OsRng, RngCore};
        let mut seed = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| FormatError::KeyFile(format!("no randomness for a new key: {e}")))?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    /// The key from its 32-byte seed.
    pub fn from_bytes(seed: &[u8; 32]) -> Self {
        SecretKey(SigningKey::from_bytes(seed))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The content of a `.key` file: one line, `wasm-patch-ed25519-secret-key:<hex seed>`.
    pub fn to_text(&self) -> String {
        format!("{SECRET_KEY_LABEL}{}\n", hex(&self.0.to_bytes()))
    }

    /// Reads a `.key` file's content.
    ///
    /// # Errors
    /// [`FormatError::KeyFile`] if it is not one.
    pub fn from_text(text: &str) -> Result<Self, FormatError> {
        Ok(Self::from_bytes(&key_from_text(
            text,
            SECRET_KEY_LABEL,
            "secret",
        )?))
    }

    fn sign_unsigned(&self, unsigned: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.0.sign(&message(unsigned)).to_bytes()
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(public {})", self.public_key().to_hex())
    }
}

fn key_from_text(text: &str, label: &str, what: &str) -> Result<[u8; 32], FormatError> {
    let line = text.trim();
    let Some(h) = line.strip_prefix(label) else {
        let other = if what == "public" {
            SECRET_KEY_LABEL
        } else {
            PUBLIC_KEY_LABEL
        };
        return Err(FormatError::KeyFile(if line.starts_with(other) {
            format!("this is not a {what} key file (it holds the other half of the pair)")
        } else {
            format!("not a wasm-patch {what} key file (expected a line starting with `{label}`)")
        }));
    };
    unhex(h)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| FormatError::KeyFile(format!("{what} key is not 64 hex digits")))
}

/// The signed message for a bundle whose unsigned bytes are `unsigned`.
fn message(unsigned: &[u8]) -> Vec<u8> {
    let mut m = SIGNATURE_DOMAIN.to_vec();
    m.extend_from_slice(&Sha256::digest(unsigned));
    m
}

/// A bundle's signature section: the signer's public key and the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    public_key: PublicKey,
    bytes: [u8; 64],
}

impl Signature {
    /// The key the signature claims to be made with.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// The 64 signature bytes.
    pub fn signature_bytes(&self) -> &[u8; 64] {
        &self.bytes
    }

    /// Appends the `wasm-patch.signature` custom section to `out`.
    pub(crate) fn append_section(&self, out: &mut Vec<u8>) {
        let mut payload = Vec::with_capacity(SIGNATURE_PAYLOAD_LEN);
        payload.push(ALG_ED25519);
        payload.extend_from_slice(&self.public_key.to_bytes());
        payload.extend_from_slice(&self.bytes);
        let section = wasm_encoder::CustomSection {
            name: SIGNATURE_SECTION.into(),
            data: payload.into(),
        };
        wasm_encoder::Section::append_to(&section, out);
    }
}

impl Bundle {
    /// Signs the bundle with `key`, replacing any earlier signature. The
    /// bundle id does not change.
    pub fn sign(&mut self, key: &SecretKey) {
        self.signature = Some(Signature {
            public_key: key.public_key(),
            bytes: key.sign_unsigned(&self.unsigned),
        });
    }

    /// Checks that the bundle's signature is valid for the key it names,
    /// and returns that key. Says nothing about whether the key is trusted:
    /// hosts should use [`TrustedKeys::verify`].
    ///
    /// # Errors
    /// [`FormatError::Unsigned`] or [`FormatError::BadSignature`].
    pub fn verify_signature(&self) -> Result<&PublicKey, FormatError> {
        let sig = self.signature.as_ref().ok_or(FormatError::Unsigned)?;
        if sig.public_key.verify(&self.unsigned, &sig.bytes) {
            Ok(&sig.public_key)
        } else {
            Err(FormatError::BadSignature {
                key: sig.public_key.to_hex(),
            })
        }
    }
}

/// Splits `bytes` into the unsigned part and the signature, by walking the
/// section headers only. The signature section, if present, must be last.
///
/// # Errors
/// [`FormatError::Malformed`] if the section framing is broken,
/// [`FormatError::MalformedSignature`] if the signature section is.
pub fn split_signature(bytes: &[u8]) -> Result<(&[u8], Option<Signature>), FormatError> {
    let malformed = |offset: usize, message: String| FormatError::Malformed {
        offset: offset as u64,
        message,
    };
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(malformed(0, "not a wasm module (no `\\0asm` magic)".into()));
    }
    if bytes[4..8] != [1, 0, 0, 0] {
        return Err(malformed(
            4,
            "not a core wasm module of version 1 (a component, or an unknown version)".into(),
        ));
    }
    let mut pos = 8;
    while pos < bytes.len() {
        let start = pos;
        let id = bytes[pos];
        pos += 1;
        let size = read_leb_u32(bytes, &mut pos)
            .ok_or_else(|| malformed(start + 1, format!("bad size of section with id {id}")))?;
        let end = pos
            .checked_add(size as usize)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| {
                malformed(
                    start,
                    format!(
                        "section with id {id} of {size} bytes runs past the end ({} bytes left)",
                        bytes.len() - pos
                    ),
                )
            })?;
        if id == 0 {
            let mut p = pos;
            let name_len = read_leb_u32(bytes, &mut p)
                .ok_or_else(|| malformed(pos, "bad custom section name length".into()))?;
            let name_end = p
                .checked_add(name_len as usize)
                .filter(|&e| e <= end)
                .ok_or_else(|| {
                    malformed(pos, "custom section name runs past its section".into())
                })?;
            if &bytes[p..name_end] == SIGNATURE_SECTION.as_bytes() {
                if end != bytes.len() {
                    return Err(FormatError::MalformedSignature {
                        offset: start as u64,
                        reason: "the signature section must be the last section".into(),
                    });
                }
                let payload = &bytes[name_end..end];
                return Ok((&bytes[..start], Some(read_signature(payload, name_end)?)));
            }
        }
        pos = end;
    }
    Ok((bytes, None))
}

fn read_signature(payload: &[u8], offset: usize) -> Result<Signature, FormatError> {
    let bad = |reason: String| FormatError::MalformedSignature {
        offset: offset as u64,
        reason,
    };
    if payload.len() != SIGNATURE_PAYLOAD_LEN {
        return Err(bad(format!(
            "payload is {} bytes, expected {SIGNATURE_PAYLOAD_LEN} (algorithm, key, signature)",
            payload.len()
        )));
    }
    if payload[0] != ALG_ED25519 {
        return Err(bad(format!(
            "unknown signature algorithm {} (1 is ed25519)",
            payload[0]
        )));
    }
    let key: [u8; 32] = payload[1..33].try_into().expect("length checked above");
    let public_key = PublicKey::from_bytes(&key)
        .map_err(|_| bad("public key is not a valid ed25519 point".into()))?;
    let bytes: [u8; 64] = payload[33..].try_into().expect("length checked above");
    Ok(Signature { public_key, bytes })
}

/// Reads an unsigned LEB128 `u32` at `*pos`, advancing it. `None` if
/// truncated, too long or out of range.
pub(crate) fn read_leb_u32(bytes: &[u8], pos: &mut usize) -> Option<u32> {
    let mut result: u64 = 0;
    for i in 0..5 {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        result |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return u32::try_from(result).ok();
        }
    }
    None
}

/// The keys a host accepts bundles from.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<PublicKey>,
}

impl TrustedKeys {
    /// No key trusted yet (then every bundle is refused).
    pub fn new() -> Self {
        TrustedKeys::default()
    }

    /// Trusts `key` too.
    pub fn add(&mut self, key: PublicKey) -> &mut Self {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
        self
    }

    /// The trusted keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Demands a valid signature from a trusted key, then parses.
    ///
    /// The order matters: the signature section is found by walking section
    /// headers only, the key is looked up and the signature checked over the
    /// raw unsigned bytes, and only a bundle that passes reaches
    /// [`Bundle::parse`].
    ///
    /// # Errors
    /// [`FormatError::Unsigned`], [`FormatError::UntrustedKey`],
    /// [`FormatError::BadSignature`], or any error from framing or parsing.
    pub fn verify(&self, bytes: &[u8]) -> Result<VerifiedBundle, FormatError> {
        let (unsigned, sig) = split_signature(bytes)?;
        let sig = sig.ok_or(FormatError::Unsigned)?;
        if !self.keys.contains(&sig.public_key) {
            return Err(FormatError::UntrustedKey {
                key: sig.public_key.to_hex(),
            });
        }
        if !sig.public_key.verify(unsigned, &sig.bytes) {
            return Err(FormatError::BadSignature {
                key: sig.public_key.to_hex(),
            });
        }
        let bundle = Bundle::parse(bytes)?;
        Ok(VerifiedBundle {
            bundle,
            signer: sig.public_key,
        })
    }
}

/// A bundle whose signature was checked against trusted keys.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    bundle: Bundle,
    signer: PublicKey,
}

impl VerifiedBundle {
    /// The bundle.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The bundle, by value.
    pub fn into_bundle(self) -> Bundle {
        self.bundle
    }

    /// The trusted key that signed it.
    pub fn signer(&self) -> &PublicKey {
        &self.signer
    }
}

impl std::ops::Deref for VerifiedBundle {
    type Target = Bundle;
    fn deref(&self) -> &Bundle {
        &self.bundle
    }
}

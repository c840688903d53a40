//! `wasm-patch keygen`, `sign` and `verify` (being built for the bundle issue).

/// Arguments of `wasm-patch keygen`.
#[derive(clap::Args)]
pub struct KeygenArgs {}
/// Arguments of `wasm-patch sign`.
#[derive(clap::Args)]
pub struct SignArgs {}
/// Arguments of `wasm-patch verify`.
#[derive(clap::Args)]
pub struct VerifyArgs {}

/// `keygen` entry point.
pub fn keygen(_args: KeygenArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`keygen` is not available yet")
}
/// `sign` entry point.
pub fn sign(_args: SignArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`sign` is not available yet")
}
/// `verify` entry point.
pub fn verify(_args: VerifyArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`verify` is not available yet")
}

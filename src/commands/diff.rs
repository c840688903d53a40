//! `wasm-patch diff` (being built for the bundle issue).

/// Arguments of `wasm-patch diff`.
#[derive(clap::Args)]
pub struct DiffArgs {}

/// Entry point.
pub fn main(_args: DiffArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`diff` is not available yet")
}

//! `wasm-patch wast`.

/// Arguments of `wasm-patch wast`.
#[derive(clap::Args)]
pub struct WastArgs {}

/// Entry point.
pub fn main(_args: WastArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`wast` is not available yet")
}

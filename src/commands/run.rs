//! `wasm-patch run`.

/// Arguments of `wasm-patch run`.
#[derive(clap::Args)]
pub struct RunArgs {}

/// Entry point.
pub fn main(_args: RunArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`run` is not available yet")
}

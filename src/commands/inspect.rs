//! `wasm-patch inspect` (being built for the bundle issue).

/// Arguments of `wasm-patch inspect`.
#[derive(clap::Args)]
pub struct InspectArgs {}

/// Entry point.
pub fn main(_args: InspectArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`inspect` is not available yet")
}

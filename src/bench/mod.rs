//! The transition-latency harness behind `wasm-patch bench transition` and
//! `cargo bench --bench transition`: [`engine`] measures, [`stats`]
//! summarises, [`report`] prints the table and the JSON, [`plot`] draws the
//! SVG.

pub mod engine;
pub mod plot;
pub mod report;
pub mod stats;

pub use engine::{run_case, BenchError, Case, Phase, Progress, Run, Settings};

//! One module per CLI verb. Each exposes a clap `Args` struct and an entry
//! point returning the process exit code.

pub mod apply;
pub mod bench;
pub mod control_verbs;
pub mod diff;
pub mod hash;
pub mod inspect;
pub mod run;
pub mod sign;
pub mod status;
pub mod wast;

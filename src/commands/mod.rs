//! One module per CLI verb. Each exposes a clap `Args` struct and an entry
//! point returning the process exit code.

pub mod apply;
// The control protocol lives at `src/control.rs`; it is declared here (not in
// `lib.rs`) so that the control verbs' files stay together.
#[path = "../control.rs"]
pub mod control;
pub mod control_verbs;
pub mod diff;
pub mod inspect;
pub mod run;
pub mod sign;
pub mod status;
pub mod wast;

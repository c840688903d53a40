//! Live control from the command line: the client side of the control
//! protocol (the verbs' requests, exit statuses and reports). The server
//! and the protocol live in the `wasm-patch-control` library, re-exported
//! here, so that a host can serve the socket without this crate.

pub use wasm_patch_control::*;

mod client;

pub use client::*;

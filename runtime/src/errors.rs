//! Every error type of the runtime, in one place.

use crate::trap::TrapKind;
use std::fmt;

/// One wasm frame of a backtrace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    /// Function index in its module.
    pub func_index: u32,
    /// Function name (name section, export name, or `func[N]`).
    pub name: String,
    /// Code unit (compiled version) the frame was executing.
    pub unit: u32,
    /// Wasm byte offset in the module.
    pub offset: u32,
    /// The frame runs the target module's own code from a bundle's unit
    /// (an OSR entry of a map back, `docs/transfer.md`), so `unit` names
    /// the bundle although the code is version 0.
    pub base: bool,
}

/// A trap: its kind and the wasm backtrace, innermost frame first.
#[derive(Clone, Debug)]
pub struct Trap {
    /// Why execution stopped.
    pub kind: TrapKind,
    /// Innermost first (at most 64 frames are kept).
    pub frames: Vec<FrameInfo>,
    /// Total number of wasm frames on the stack when it trapped.
    pub depth: usize,
    /// For host errors: the host's message.
    pub message: Option<String>,
}

impl fmt::Display for Trap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wasm trap: {}", self.kind)?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        if !self.frames.is_empty() {
            write!(f, "\nwasm backtrace:")?;
            for (i, fr) in self.frames.iter().enumerate() {
                write!(f, "\n  {i:>3}: {:#8x} - {}", fr.offset, fr.name)?;
            }
            if self.depth > self.frames.len() {
                write!(f, "\n  ... {} more frames", self.depth - self.frames.len())?;
            }
        }
        Ok(())
    }
}

/// Errors of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The module is malformed or fails validation.
    #[error("invalid module: {0}")]
    Invalid(String),
    /// The module uses a feature this runtime does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Code generation failed.
    #[error("compile error: {0}")]
    Compile(String),
    /// Linking or instantiation failed (missing or mistyped import...).
    #[error("link error: {0}")]
    Link(String),
    /// Instantiation failed (segment out of bounds...).
    #[error("instantiation failed: {0}")]
    Instantiate(String),
    /// Guest code trapped.
    #[error("{0}")]
    Trap(Trap),
    /// A call was made with wrong arguments.
    #[error("bad call: {0}")]
    BadCall(String),
    /// A thread could not make progress (parked with nothing to wake it).
    #[error("deadlock: thread {0} is parked and no other thread can run")]
    Deadlock(u32),
    /// A patch callback's thread parked with none of the threads it spawned
    /// able to run. Callbacks run alone (no thread that existed before gets
    /// a turn meanwhile), so nothing could wake it.
    #[error("patch callback (thread {0}) parked: callbacks run alone, so nothing can wake it; a callback must not wait for other threads or I/O (threads it spawned itself do run)")]
    CallbackBlocked(u32),
    /// Error raised by a host function.
    #[error("host error: {0}")]
    Host(String),
    /// I/O error.
    #[error("i/o error: {0}")]
    Io(String),
    /// A handle was used with a store it does not belong to.
    #[error("handle used with the wrong store")]
    WrongStore,
}

impl Error {
    /// The trap, if this error is one.
    pub fn as_trap(&self) -> Option<&Trap> {
        match self {
            Error::Trap(t) => Some(t),
            _ => None,
        }
    }
}

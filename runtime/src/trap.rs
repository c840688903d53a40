//! Trap kinds: why guest execution stopped, and the Cranelift trap codes
//! that encode each kind in compiled code.

use cranelift_codegen::ir::TrapCode;
use std::fmt;

/// Why a guest stopped with a trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrapKind {
    /// Guest stack exhausted (unbounded recursion).
    StackOverflow,
    /// Linear memory access out of bounds.
    MemoryOutOfBounds,
    /// `call_indirect` index outside the table.
    TableOutOfBounds,
    /// `table.get/set/fill/copy/init` out of bounds.
    TableAccessOutOfBounds,
    /// Integer division or remainder by zero.
    IntegerDivisionByZero,
    /// Integer overflow (`INT_MIN / -1`).
    IntegerOverflow,
    /// Float-to-int conversion of NaN or out-of-range value.
    BadConversionToInteger,
    /// `unreachable` executed.
    Unreachable,
    /// `call_indirect` signature mismatch.
    IndirectCallTypeMismatch,
    /// Call through a null reference (`call_indirect` on a null entry).
    NullReference,
    /// A call reached a function removed by a revert.
    RemovedFunction,
    /// A host function returned an error, or the thread was cancelled.
    HostError,
    /// The store's epoch deadline passed (`Store::set_epoch_deadline`,
    /// `Engine::increment_epoch`): the guest was interrupted at a poll.
    Interrupt,
}

impl TrapKind {
    /// The Cranelift trap code emitted for this kind.
    pub const fn code(self) -> TrapCode {
        match self {
            TrapKind::StackOverflow => TrapCode::STACK_OVERFLOW,
            TrapKind::MemoryOutOfBounds => TrapCode::HEAP_OUT_OF_BOUNDS,
            TrapKind::IntegerDivisionByZero => TrapCode::INTEGER_DIVISION_BY_ZERO,
            TrapKind::IntegerOverflow => TrapCode::INTEGER_OVERFLOW,
            TrapKind::BadConversionToInteger => TrapCode::BAD_CONVERSION_TO_INTEGER,
            TrapKind::TableOutOfBounds => TrapCode::unwrap_user(1),
            TrapKind::Unreachable => TrapCode::unwrap_user(2),
            TrapKind::IndirectCallTypeMismatch => TrapCode::unwrap_user(3),
            TrapKind::NullReference => TrapCode::unwrap_user(4),
            TrapKind::RemovedFunction => TrapCode::unwrap_user(5),
            TrapKind::HostError => TrapCode::unwrap_user(6),
            TrapKind::TableAccessOutOfBounds => TrapCode::unwrap_user(7),
            TrapKind::Interrupt => TrapCode::unwrap_user(8),
        }
    }

    /// The kind a Cranelift trap code stands for.
    pub fn from_code(code: TrapCode) -> Option<TrapKind> {
        const ALL: [TrapKind; 13] = [
            TrapKind::Interrupt,
            TrapKind::TableAccessOutOfBounds,
            TrapKind::StackOverflow,
            TrapKind::MemoryOutOfBounds,
            TrapKind::TableOutOfBounds,
            TrapKind::IntegerDivisionByZero,
            TrapKind::IntegerOverflow,
            TrapKind::BadConversionToInteger,
            TrapKind::Unreachable,
            TrapKind::IndirectCallTypeMismatch,
            TrapKind::NullReference,
            TrapKind::RemovedFunction,
            TrapKind::HostError,
        ];
        ALL.into_iter().find(|k| k.code() == code)
    }

    /// The wording of the spec test suite's `assert_trap` messages.
    pub fn message(self) -> &'static str {
        match self {
            TrapKind::StackOverflow => "call stack exhausted",
            TrapKind::MemoryOutOfBounds => "out of bounds memory access",
            TrapKind::TableOutOfBounds => "undefined element",
            TrapKind::TableAccessOutOfBounds => "out of bounds table access",
            TrapKind::IntegerDivisionByZero => "integer divide by zero",
            TrapKind::IntegerOverflow => "integer overflow",
            TrapKind::BadConversionToInteger => "invalid conversion to integer",
            TrapKind::Unreachable => "unreachable",
            TrapKind::IndirectCallTypeMismatch => "indirect call type mismatch",
            TrapKind::NullReference => "uninitialized element",
            TrapKind::RemovedFunction => "call to a function removed by a revert",
            TrapKind::HostError => "host function error",
            TrapKind::Interrupt => "interrupted: the epoch deadline passed",
        }
    }
}

impl fmt::Display for TrapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

//! `Val`: a wasm value crossing the host boundary.

use wasmparser::ValType;

/// A WebAssembly value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Val {
    /// i32.
    I32(i32),
    /// i64.
    I64(i64),
    /// f32, as bits (keeps NaN payloads exact).
    F32(u32),
    /// f64, as bits.
    F64(u64),
    /// A funcref: raw pointer to the function's identity record, 0 = null.
    FuncRef(usize),
    /// An externref: host value, `None` = null.
    ExternRef(Option<u64>),
    /// A v128, its 16 bytes little-endian (lane 0 in the low bits).
    V128(u128),
}

/// A `v128` value for the typed host API (`TypedFunc`, `Func::wrap`): its
/// 16 bytes little-endian, lane 0 in the low bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct V128(pub u128);

impl V128 {
    /// The value as one 128-bit integer.
    pub fn as_u128(self) -> u128 {
        self.0
    }
}

impl From<u128> for V128 {
    fn from(v: u128) -> V128 {
        V128(v)
    }
}

impl Val {
    /// The zero value of a type.
    pub fn default_for(ty: ValType) -> Val {
        match ty {
            ValType::I32 => Val::I32(0),
            ValType::I64 => Val::I64(0),
            ValType::F32 => Val::F32(0),
            ValType::F64 => Val::F64(0),
            ValType::V128 => Val::V128(0),
            ValType::Ref(r) if r.is_func_ref() => Val::FuncRef(0),
            _ => Val::ExternRef(None),
        }
    }

    /// Whether the value has type `ty`.
    pub fn matches(&self, ty: ValType) -> bool {
        matches!(
            (self, ty),
            (Val::I32(_), ValType::I32)
                | (Val::I64(_), ValType::I64)
                | (Val::F32(_), ValType::F32)
                | (Val::F64(_), ValType::F64)
                | (Val::V128(_), ValType::V128)
        ) || matches!((self, ty), (Val::FuncRef(_), ValType::Ref(r)) if r.is_func_ref())
            || matches!((self, ty), (Val::ExternRef(_), ValType::Ref(r)) if r.is_extern_ref())
    }

    /// Raw 16-byte slot representation used by trampolines.
    pub(crate) fn to_raw(self) -> u128 {
        match self {
            Val::I32(v) => v as u32 as u128,
            Val::I64(v) => v as u64 as u128,
            Val::F32(v) => v as u128,
            Val::F64(v) => v as u128,
            Val::FuncRef(p) => p as u128,
            Val::ExternRef(None) => 0,
            Val::ExternRef(Some(v)) => v.wrapping_add(1) as u128,
            Val::V128(v) => v,
        }
    }

    /// Read a raw slot as a value of type `ty`.
    pub(crate) fn from_raw(raw: u128, ty: ValType) -> Val {
        match ty {
            ValType::I32 => Val::I32(raw as u32 as i32),
            ValType::I64 => Val::I64(raw as u64 as i64),
            ValType::F32 => Val::F32(raw as u32),
            ValType::F64 => Val::F64(raw as u64),
            ValType::V128 => Val::V128(raw),
            ValType::Ref(r) if r.is_func_ref() => Val::FuncRef(raw as u64 as usize),
            _ => {
                let v = raw as u64;
                Val::ExternRef(if v == 0 { None } else { Some(v - 1) })
            }
        }
    }

    /// i32 value, if it is one.
    pub fn i32(&self) -> Option<i32> {
        match self {
            Val::I32(v) => Some(*v),
            _ => None,
        }
    }

    /// v128 value, if it is one.
    pub fn v128(&self) -> Option<u128> {
        match self {
            Val::V128(v) => Some(*v),
            _ => None,
        }
    }

    /// i64 value, if it is one.
    pub fn i64(&self) -> Option<i64> {
        match self {
            Val::I64(v) => Some(*v),
            _ => None,
        }
    }
}

impl std::fmt::Display for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Val::I32(v) => write!(f, "{v}"),
            Val::I64(v) => write!(f, "{v}"),
            Val::F32(v) => write!(f, "{}", f32::from_bits(*v)),
            Val::F64(v) => write!(f, "{}", f64::from_bits(*v)),
            Val::FuncRef(0) | Val::ExternRef(None) => write!(f, "null"),
            Val::FuncRef(p) => write!(f, "funcref({p:#x})"),
            Val::ExternRef(Some(v)) => write!(f, "externref({v})"),
            // As wasmtime prints a v128: one hexadecimal number.
            Val::V128(v) => write!(f, "{v:#034x}"),
        }
    }
}

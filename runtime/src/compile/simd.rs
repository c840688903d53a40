//! Translation of the fixed-width SIMD operators (`v128`) to CLIF vector
//! instructions.
//!
//! Owns one rule: every `v128` value the translator handles outside this
//! file — on the operand stack, in locals, globals, block parameters,
//! params and results — has the canonical CLIF type `I8X16`. An operator
//! bitcasts its operands to the lane type it works on (`I16X8`, `F32X4`,
//! …) and its result back to `I8X16`; the bitcasts are register no-ops, and
//! control flow, `select` and calls never see mixed vector types.
//!
//! Memory accesses go through the same [`FuncEnvironment::memory_address`]
//! as scalar loads and stores, with the access's real size (16, 8, 4, 2 or
//! 1 bytes), so the bounds and guard logic is shared. NaN results are not
//! canonicalised (the spec accepts arithmetic NaNs).
//!
//! Entry point: [`FuncTranslator::simd_operator`], called by the operator
//! translator for operators it does not handle itself.

use super::{FuncTranslator, TranslateError};
use crate::compile::environ::FuncEnvironment;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    types, ConstantData, Endianness, InstBuilder, MemFlagsData, Opcode, Type, Value, ValueDef,
};
use wasmparser::{MemArg, Operator};

/// The canonical type of a `v128` value.
pub(super) const V128: Type = types::I8X16;

/// Flags of a bitcast between vector types: lanes are numbered little-endian,
/// as wasm numbers them.
fn lane_order() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

/// `stack: a b -> OP(a, b)` on lanes of type `$ty`.
macro_rules! vbin {
    ($t:ident, $off:ident, $ty:expr, $m:ident) => {{
        let (a, b) = $t.vpop2($ty, $off)?;
        let v = $t.b.ins().$m(a, b);
        $t.vpush(v);
    }};
}

/// `stack: a -> OP(a)` on lanes of type `$ty`.
macro_rules! vun {
    ($t:ident, $off:ident, $ty:expr, $m:ident $(, $extra:expr)*) => {{
        let a = $t.vpop($ty, $off)?;
        let v = $t.b.ins().$m($($extra,)* a);
        $t.vpush(v);
    }};
}

/// Lane-wise integer comparison (all-ones / all-zeros lanes).
macro_rules! vicmp {
    ($t:ident, $off:ident, $ty:expr, $cc:ident) => {{
        let (a, b) = $t.vpop2($ty, $off)?;
        let v = $t.b.ins().icmp(IntCC::$cc, a, b);
        $t.vpush(v);
    }};
}

/// Lane-wise float comparison (all-ones / all-zeros lanes).
macro_rules! vfcmp {
    ($t:ident, $off:ident, $ty:expr, $cc:ident) => {{
        let (a, b) = $t.vpop2($ty, $off)?;
        let v = $t.b.ins().fcmp(FloatCC::$cc, a, b);
        $t.vpush(v);
    }};
}

impl<E: FuncEnvironment> FuncTranslator<'_, '_, E> {
    /// `v` as a vector of type `ty`: `v` itself, the value a bitcast made
    /// `v` from when that has type `ty` (so that chains through the
    /// canonical type vanish and Cranelift's lowering sees the producing
    /// instruction, e.g. a comparison feeding `bitselect`), else a bitcast.
    fn vcast(&mut self, ty: Type, v: Value) -> Value {
        let dfg = &self.b.func.dfg;
        if dfg.value_type(v) == ty {
            return v;
        }
        if let ValueDef::Result(inst, 0) = dfg.value_def(v) {
            if dfg.insts[inst].opcode() == Opcode::Bitcast {
                let src = dfg.inst_args(inst)[0];
                if dfg.value_type(src) == ty {
                    return src;
                }
            }
        }
        self.b.ins().bitcast(ty, lane_order(), v)
    }

    /// The lane type `v` was produced with (looking through a bitcast to
    /// the canonical type).
    fn produced_type(&self, v: Value) -> Type {
        let dfg = &self.b.func.dfg;
        if let ValueDef::Result(inst, 0) = dfg.value_def(v) {
            if dfg.insts[inst].opcode() == Opcode::Bitcast {
                return dfg.value_type(dfg.inst_args(inst)[0]);
            }
        }
        dfg.value_type(v)
    }

    /// Pop a `v128` as a vector of type `ty`.
    fn vpop(&mut self, ty: Type, off: usize) -> Result<Value, TranslateError> {
        let v = self.stack.pop(off)?;
        Ok(self.vcast(ty, v))
    }

    /// Pop two `v128`s (the deeper first) as vectors of type `ty`.
    fn vpop2(&mut self, ty: Type, off: usize) -> Result<(Value, Value), TranslateError> {
        let (a, b) = self.stack.pop2(off)?;
        Ok((self.vcast(ty, a), self.vcast(ty, b)))
    }

    /// Push a vector result in the canonical type.
    fn vpush(&mut self, v: Value) {
        let v = self.vcast(V128, v);
        self.stack.push(v);
    }

    /// Push a scalar result.
    fn spush(&mut self, v: Value) {
        self.stack.push(v);
    }

    /// A `v128` constant of the given little-endian bytes.
    pub(super) fn v128_const(&mut self, bytes: &[u8; 16]) -> Value {
        let c = self
            .b
            .func
            .dfg
            .constants
            .insert(ConstantData::from(&bytes[..]));
        self.b.ins().vconst(V128, c)
    }

    /// The address of a `size`-byte access with the memarg's memory and
    /// offset, the index popped from the stack.
    fn vaddr(
        &mut self,
        memarg: &MemArg,
        size: u32,
        off: usize,
    ) -> Result<(Value, MemFlagsData), TranslateError> {
        let index = self.stack.pop(off)?;
        self.mem_access(memarg, size, index, off)
    }

    /// `v128.loadN_splat`: load a scalar of type `scalar`, splat it to `ty`.
    fn load_splat(
        &mut self,
        memarg: &MemArg,
        scalar: Type,
        ty: Type,
        off: usize,
    ) -> Result<(), TranslateError> {
        let (addr, flags) = self.vaddr(memarg, scalar.bytes(), off)?;
        let s = self.b.ins().load(scalar, flags, addr, 0);
        let v = self.b.ins().splat(ty, s);
        self.vpush(v);
        Ok(())
    }

    /// `v128.loadN_zero`: load a scalar into lane 0, the others zero.
    fn load_zero(
        &mut self,
        memarg: &MemArg,
        scalar: Type,
        ty: Type,
        off: usize,
    ) -> Result<(), TranslateError> {
        let (addr, flags) = self.vaddr(memarg, scalar.bytes(), off)?;
        let s = self.b.ins().load(scalar, flags, addr, 0);
        let v = self.b.ins().scalar_to_vector(ty, s);
        self.vpush(v);
        Ok(())
    }

    /// `v128.loadN_lane`: replace lane `lane` of the popped vector (viewed
    /// as `ty`) with a loaded scalar.
    fn load_lane(
        &mut self,
        memarg: &MemArg,
        ty: Type,
        lane: u8,
        off: usize,
    ) -> Result<(), TranslateError> {
        let vec = self.vpop(ty, off)?;
        let scalar = ty.lane_type();
        let (addr, flags) = self.vaddr(memarg, scalar.bytes(), off)?;
        let s = self.b.ins().load(scalar, flags, addr, 0);
        let v = self.b.ins().insertlane(vec, s, lane);
        self.vpush(v);
        Ok(())
    }

    /// `v128.storeN_lane`: store lane `lane` of the popped vector (viewed as
    /// `ty`).
    fn store_lane(
        &mut self,
        memarg: &MemArg,
        ty: Type,
        lane: u8,
        off: usize,
    ) -> Result<(), TranslateError> {
        let vec = self.vpop(ty, off)?;
        let (addr, flags) = self.vaddr(memarg, ty.lane_type().bytes(), off)?;
        let s = self.b.ins().extractlane(vec, lane);
        self.b.ins().store(flags, s, addr, 0);
        Ok(())
    }

    /// `iNxM.extract_lane[_s|_u]`: `extend` is `Some(signed)` for the lanes
    /// narrower than i32.
    fn extract_lane(
        &mut self,
        ty: Type,
        lane: u8,
        extend: Option<bool>,
        off: usize,
    ) -> Result<(), TranslateError> {
        let vec = self.vpop(ty, off)?;
        let mut s = self.b.ins().extractlane(vec, lane);
        match extend {
            Some(true) => s = self.b.ins().sextend(types::I32, s),
            Some(false) => s = self.b.ins().uextend(types::I32, s),
            None => {}
        }
        self.spush(s);
        Ok(())
    }

    /// `T.replace_lane`: the scalar is narrowed to the lane type first.
    fn replace_lane(&mut self, ty: Type, lane: u8, off: usize) -> Result<(), TranslateError> {
        let s = self.stack.pop(off)?;
        let vec = self.vpop(ty, off)?;
        let s = self.narrow_scalar(ty, s);
        let v = self.b.ins().insertlane(vec, s, lane);
        self.vpush(v);
        Ok(())
    }

    /// `T.splat`.
    fn splat(&mut self, ty: Type, off: usize) -> Result<(), TranslateError> {
        let s = self.stack.pop(off)?;
        let s = self.narrow_scalar(ty, s);
        let v = self.b.ins().splat(ty, s);
        self.vpush(v);
        Ok(())
    }

    /// An i32 operand reduced to `ty`'s lane type when that is narrower.
    fn narrow_scalar(&mut self, ty: Type, s: Value) -> Value {
        let lane = ty.lane_type();
        if lane.is_int() && lane.bits() < 32 {
            self.b.ins().ireduce(lane, s)
        } else {
            s
        }
    }

    /// A shift of lanes of `ty` by an i32 amount taken modulo the lane width.
    fn shift(
        &mut self,
        ty: Type,
        off: usize,
        op: fn(cranelift_frontend::FuncInstBuilder<'_, '_>, Value, Value) -> Value,
    ) -> Result<(), TranslateError> {
        let amount = self.stack.pop(off)?;
        let vec = self.vpop(ty, off)?;
        let amount = self
            .b
            .ins()
            .band_imm_u(amount, i64::from(ty.lane_bits() - 1));
        let v = op(self.b.ins(), vec, amount);
        self.vpush(v);
        Ok(())
    }

    /// `all_true` / `bitmask` style reductions to an i32.
    fn reduce_to_i32(&mut self, v: Value) {
        let t = self.b.func.dfg.value_type(v);
        let r = if t == types::I32 {
            v
        } else {
            self.b.ins().uextend(types::I32, v)
        };
        self.spush(r);
    }

    /// `extmul`: widen both operands' low or high halves, multiply.
    fn ext_mul(
        &mut self,
        ty: Type,
        high: bool,
        signed: bool,
        off: usize,
    ) -> Result<(), TranslateError> {
        let (a, b) = self.vpop2(ty, off)?;
        let (a, b) = (self.widen(a, high, signed), self.widen(b, high, signed));
        let v = self.b.ins().imul(a, b);
        self.vpush(v);
        Ok(())
    }

    /// The low or high half of `v`, each lane widened to twice its width.
    fn widen(&mut self, v: Value, high: bool, signed: bool) -> Value {
        let ins = self.b.ins();
        match (high, signed) {
            (false, true) => ins.swiden_low(v),
            (true, true) => ins.swiden_high(v),
            (false, false) => ins.uwiden_low(v),
            (true, false) => ins.uwiden_high(v),
        }
    }

    /// `extadd_pairwise`: sums of adjacent lanes, widened.
    fn ext_add_pairwise(
        &mut self,
        ty: Type,
        signed: bool,
        off: usize,
    ) -> Result<(), TranslateError> {
        let a = self.vpop(ty, off)?;
        let low = self.widen(a, false, signed);
        let high = self.widen(a, true, signed);
        let v = self.b.ins().iadd_pairwise(low, high);
        self.vpush(v);
        Ok(())
    }

    /// `pmin` (`b < a ? b : a`) and `pmax` (`a < b ? b : a`), lane-wise.
    fn pseudo_min_max(&mut self, ty: Type, max: bool, off: usize) -> Result<(), TranslateError> {
        let (a, b) = self.vpop2(ty, off)?;
        let mask = if max {
            self.b.ins().fcmp(FloatCC::LessThan, a, b)
        } else {
            self.b.ins().fcmp(FloatCC::LessThan, b, a)
        };
        let mask = self.vcast(ty, mask);
        let v = self.b.ins().bitselect(mask, b, a);
        self.vpush(v);
        Ok(())
    }

    /// `i32x4.trunc_sat_f64x2_[su]_zero`: two saturated i32 lanes, two zero.
    fn trunc_sat_f64x2_zero(&mut self, signed: bool, off: usize) -> Result<(), TranslateError> {
        let a = self.vpop(types::F64X2, off)?;
        // Cranelift lowers these narrowings only in this exact shape: a
        // saturating conversion narrowed with a zero `vconst` of the same
        // type (no bitcast in between).
        let c = self
            .b
            .func
            .dfg
            .constants
            .insert(ConstantData::from(&[0u8; 16][..]));
        let zero = self.b.ins().vconst(types::I64X2, c);
        let v = if signed {
            let c = self.b.ins().fcvt_to_sint_sat(types::I64X2, a);
            self.b.ins().snarrow(c, zero)
        } else {
            let c = self.b.ins().fcvt_to_uint_sat(types::I64X2, a);
            self.b.ins().uunarrow(c, zero)
        };
        self.vpush(v);
        Ok(())
    }

    /// Translate `op` if it is a SIMD operator; `Ok(false)` if it is not
    /// one (the caller reports it as unsupported).
    pub(super) fn simd_operator(
        &mut self,
        op: &Operator<'_>,
        off: usize,
    ) -> Result<bool, TranslateError> {
        use types::{F32X4, F64X2, I16X8, I32X4, I64X2, I8X16};
        use Operator as O;
        match *op {
            // ---- memory ----
            O::V128Load { memarg } => {
                let (addr, flags) = self.vaddr(&memarg, 16, off)?;
                let v = self.b.ins().load(V128, flags, addr, 0);
                self.vpush(v);
            }
            O::V128Store { memarg } => {
                let v = self.vpop(V128, off)?;
                let (addr, flags) = self.vaddr(&memarg, 16, off)?;
                self.b.ins().store(flags, v, addr, 0);
            }
            O::V128Load8x8S { memarg } => {
                self.load_ext(&memarg, off, |i, f, a| i.sload8x8(f, a, 0))?
            }
            O::V128Load8x8U { memarg } => {
                self.load_ext(&memarg, off, |i, f, a| i.uload8x8(f, a, 0))?
            }
            O::V128Load16x4S { memarg } => {
                self.load_ext(&memarg, off, |i, f, a| i.sload16x4(f, a, 0))?
            }
            O::V128Load16x4U { memarg } => {
                self.load_ext(&memarg, off, |i, f, a| i.uload16x4(f, a, 0))?
            }
            O::V128Load32x2S { memarg } => {
                self.load_ext(&memarg, off, |i, f, a| i.sload32x2(f, a, 0))?
            }
            O::V128Load32x2U { memarg } => {
                self.load_ext(&memarg, off, |i, f, a| i.uload32x2(f, a, 0))?
            }
            O::V128Load8Splat { memarg } => self.load_splat(&memarg, types::I8, I8X16, off)?,
            O::V128Load16Splat { memarg } => self.load_splat(&memarg, types::I16, I16X8, off)?,
            O::V128Load32Splat { memarg } => self.load_splat(&memarg, types::I32, I32X4, off)?,
            O::V128Load64Splat { memarg } => self.load_splat(&memarg, types::I64, I64X2, off)?,
            O::V128Load32Zero { memarg } => self.load_zero(&memarg, types::I32, I32X4, off)?,
            O::V128Load64Zero { memarg } => self.load_zero(&memarg, types::I64, I64X2, off)?,
            O::V128Load8Lane { memarg, lane } => self.load_lane(&memarg, I8X16, lane, off)?,
            O::V128Load16Lane { memarg, lane } => self.load_lane(&memarg, I16X8, lane, off)?,
            O::V128Load32Lane { memarg, lane } => self.load_lane(&memarg, I32X4, lane, off)?,
            O::V128Load64Lane { memarg, lane } => self.load_lane(&memarg, I64X2, lane, off)?,
            O::V128Store8Lane { memarg, lane } => self.store_lane(&memarg, I8X16, lane, off)?,
            O::V128Store16Lane { memarg, lane } => self.store_lane(&memarg, I16X8, lane, off)?,
            O::V128Store32Lane { memarg, lane } => self.store_lane(&memarg, I32X4, lane, off)?,
            O::V128Store64Lane { memarg, lane } => self.store_lane(&memarg, I64X2, lane, off)?,

            // ---- constants, shuffles, lanes ----
            O::V128Const { value } => {
                let v = self.v128_const(value.bytes());
                self.vpush(v);
            }
            O::I8x16Shuffle { lanes } => {
                let (a, b) = self.vpop2(I8X16, off)?;
                let mask = self
                    .b
                    .func
                    .dfg
                    .immediates
                    .push(ConstantData::from(&lanes[..]));
                let v = self.b.ins().shuffle(a, b, mask);
                self.vpush(v);
            }
            O::I8x16Swizzle => vbin!(self, off, I8X16, swizzle),
            O::I8x16Splat => self.splat(I8X16, off)?,
            O::I16x8Splat => self.splat(I16X8, off)?,
            O::I32x4Splat => self.splat(I32X4, off)?,
            O::I64x2Splat => self.splat(I64X2, off)?,
            O::F32x4Splat => self.splat(F32X4, off)?,
            O::F64x2Splat => self.splat(F64X2, off)?,
            O::I8x16ExtractLaneS { lane } => self.extract_lane(I8X16, lane, Some(true), off)?,
            O::I8x16ExtractLaneU { lane } => self.extract_lane(I8X16, lane, Some(false), off)?,
            O::I16x8ExtractLaneS { lane } => self.extract_lane(I16X8, lane, Some(true), off)?,
            O::I16x8ExtractLaneU { lane } => self.extract_lane(I16X8, lane, Some(false), off)?,
            O::I32x4ExtractLane { lane } => self.extract_lane(I32X4, lane, None, off)?,
            O::I64x2ExtractLane { lane } => self.extract_lane(I64X2, lane, None, off)?,
            O::F32x4ExtractLane { lane } => self.extract_lane(F32X4, lane, None, off)?,
            O::F64x2ExtractLane { lane } => self.extract_lane(F64X2, lane, None, off)?,
            O::I8x16ReplaceLane { lane } => self.replace_lane(I8X16, lane, off)?,
            O::I16x8ReplaceLane { lane } => self.replace_lane(I16X8, lane, off)?,
            O::I32x4ReplaceLane { lane } => self.replace_lane(I32X4, lane, off)?,
            O::I64x2ReplaceLane { lane } => self.replace_lane(I64X2, lane, off)?,
            O::F32x4ReplaceLane { lane } => self.replace_lane(F32X4, lane, off)?,
            O::F64x2ReplaceLane { lane } => self.replace_lane(F64X2, lane, off)?,

            // ---- comparisons ----
            O::I8x16Eq => vicmp!(self, off, I8X16, Equal),
            O::I8x16Ne => vicmp!(self, off, I8X16, NotEqual),
            O::I8x16LtS => vicmp!(self, off, I8X16, SignedLessThan),
            O::I8x16LtU => vicmp!(self, off, I8X16, UnsignedLessThan),
            O::I8x16GtS => vicmp!(self, off, I8X16, SignedGreaterThan),
            O::I8x16GtU => vicmp!(self, off, I8X16, UnsignedGreaterThan),
            O::I8x16LeS => vicmp!(self, off, I8X16, SignedLessThanOrEqual),
            O::I8x16LeU => vicmp!(self, off, I8X16, UnsignedLessThanOrEqual),
            O::I8x16GeS => vicmp!(self, off, I8X16, SignedGreaterThanOrEqual),
            O::I8x16GeU => vicmp!(self, off, I8X16, UnsignedGreaterThanOrEqual),
            O::I16x8Eq => vicmp!(self, off, I16X8, Equal),
            O::I16x8Ne => vicmp!(self, off, I16X8, NotEqual),
            O::I16x8LtS => vicmp!(self, off, I16X8, SignedLessThan),
            O::I16x8LtU => vicmp!(self, off, I16X8, UnsignedLessThan),
            O::I16x8GtS => vicmp!(self, off, I16X8, SignedGreaterThan),
            O::I16x8GtU => vicmp!(self, off, I16X8, UnsignedGreaterThan),
            O::I16x8LeS => vicmp!(self, off, I16X8, SignedLessThanOrEqual),
            O::I16x8LeU => vicmp!(self, off, I16X8, UnsignedLessThanOrEqual),
            O::I16x8GeS => vicmp!(self, off, I16X8, SignedGreaterThanOrEqual),
            O::I16x8GeU => vicmp!(self, off, I16X8, UnsignedGreaterThanOrEqual),
            O::I32x4Eq => vicmp!(self, off, I32X4, Equal),
            O::I32x4Ne => vicmp!(self, off, I32X4, NotEqual),
            O::I32x4LtS => vicmp!(self, off, I32X4, SignedLessThan),
            O::I32x4LtU => vicmp!(self, off, I32X4, UnsignedLessThan),
            O::I32x4GtS => vicmp!(self, off, I32X4, SignedGreaterThan),
            O::I32x4GtU => vicmp!(self, off, I32X4, UnsignedGreaterThan),
            O::I32x4LeS => vicmp!(self, off, I32X4, SignedLessThanOrEqual),
            O::I32x4LeU => vicmp!(self, off, I32X4, UnsignedLessThanOrEqual),
            O::I32x4GeS => vicmp!(self, off, I32X4, SignedGreaterThanOrEqual),
            O::I32x4GeU => vicmp!(self, off, I32X4, UnsignedGreaterThanOrEqual),
            O::I64x2Eq => vicmp!(self, off, I64X2, Equal),
            O::I64x2Ne => vicmp!(self, off, I64X2, NotEqual),
            O::I64x2LtS => vicmp!(self, off, I64X2, SignedLessThan),
            O::I64x2GtS => vicmp!(self, off, I64X2, SignedGreaterThan),
            O::I64x2LeS => vicmp!(self, off, I64X2, SignedLessThanOrEqual),
            O::I64x2GeS => vicmp!(self, off, I64X2, SignedGreaterThanOrEqual),
            O::F32x4Eq => vfcmp!(self, off, F32X4, Equal),
            O::F32x4Ne => vfcmp!(self, off, F32X4, NotEqual),
            O::F32x4Lt => vfcmp!(self, off, F32X4, LessThan),
            O::F32x4Gt => vfcmp!(self, off, F32X4, GreaterThan),
            O::F32x4Le => vfcmp!(self, off, F32X4, LessThanOrEqual),
            O::F32x4Ge => vfcmp!(self, off, F32X4, GreaterThanOrEqual),
            O::F64x2Eq => vfcmp!(self, off, F64X2, Equal),
            O::F64x2Ne => vfcmp!(self, off, F64X2, NotEqual),
            O::F64x2Lt => vfcmp!(self, off, F64X2, LessThan),
            O::F64x2Gt => vfcmp!(self, off, F64X2, GreaterThan),
            O::F64x2Le => vfcmp!(self, off, F64X2, LessThanOrEqual),
            O::F64x2Ge => vfcmp!(self, off, F64X2, GreaterThanOrEqual),

            // ---- bitwise ----
            O::V128Not => vun!(self, off, V128, bnot),
            O::V128And => vbin!(self, off, V128, band),
            O::V128AndNot => vbin!(self, off, V128, band_not),
            O::V128Or => vbin!(self, off, V128, bor),
            O::V128Xor => vbin!(self, off, V128, bxor),
            O::V128Bitselect => {
                // In the lane type of the mask's producer: a comparison
                // mask then lowers to a blend.
                let c = self.stack.pop(off)?;
                let ty = self.produced_type(c);
                let c = self.vcast(ty, c);
                let (a, b) = self.vpop2(ty, off)?;
                let v = self.b.ins().bitselect(c, a, b);
                self.vpush(v);
            }
            O::V128AnyTrue => {
                let a = self.vpop(V128, off)?;
                let r = self.b.ins().vany_true(a);
                self.reduce_to_i32(r);
            }
            O::I8x16AllTrue | O::I16x8AllTrue | O::I32x4AllTrue | O::I64x2AllTrue => {
                let ty = match *op {
                    O::I8x16AllTrue => I8X16,
                    O::I16x8AllTrue => I16X8,
                    O::I32x4AllTrue => I32X4,
                    _ => I64X2,
                };
                let a = self.vpop(ty, off)?;
                let r = self.b.ins().vall_true(a);
                self.reduce_to_i32(r);
            }
            O::I8x16Bitmask | O::I16x8Bitmask | O::I32x4Bitmask | O::I64x2Bitmask => {
                let ty = match *op {
                    O::I8x16Bitmask => I8X16,
                    O::I16x8Bitmask => I16X8,
                    O::I32x4Bitmask => I32X4,
                    _ => I64X2,
                };
                let a = self.vpop(ty, off)?;
                let r = self.b.ins().vhigh_bits(types::I32, a);
                self.reduce_to_i32(r);
            }

            // ---- shifts ----
            O::I8x16Shl => self.shift(I8X16, off, |i, a, b| i.ishl(a, b))?,
            O::I8x16ShrS => self.shift(I8X16, off, |i, a, b| i.sshr(a, b))?,
            O::I8x16ShrU => self.shift(I8X16, off, |i, a, b| i.ushr(a, b))?,
            O::I16x8Shl => self.shift(I16X8, off, |i, a, b| i.ishl(a, b))?,
            O::I16x8ShrS => self.shift(I16X8, off, |i, a, b| i.sshr(a, b))?,
            O::I16x8ShrU => self.shift(I16X8, off, |i, a, b| i.ushr(a, b))?,
            O::I32x4Shl => self.shift(I32X4, off, |i, a, b| i.ishl(a, b))?,
            O::I32x4ShrS => self.shift(I32X4, off, |i, a, b| i.sshr(a, b))?,
            O::I32x4ShrU => self.shift(I32X4, off, |i, a, b| i.ushr(a, b))?,
            O::I64x2Shl => self.shift(I64X2, off, |i, a, b| i.ishl(a, b))?,
            O::I64x2ShrS => self.shift(I64X2, off, |i, a, b| i.sshr(a, b))?,
            O::I64x2ShrU => self.shift(I64X2, off, |i, a, b| i.ushr(a, b))?,

            _ => return self.simd_arith(op, off),
        }
        Ok(true)
    }

    /// A `v128.loadMxN_[su]` with the given extending vector load.
    fn load_ext(
        &mut self,
        memarg: &MemArg,
        off: usize,
        load: impl FnOnce(cranelift_frontend::FuncInstBuilder<'_, '_>, MemFlagsData, Value) -> Value,
    ) -> Result<(), TranslateError> {
        let (addr, flags) = self.vaddr(memarg, 8, off)?;
        let v = load(self.b.ins(), flags, addr);
        self.vpush(v);
        Ok(())
    }

    /// Arithmetic and conversions (the second half of [`Self::simd_operator`]).
    fn simd_arith(&mut self, op: &Operator<'_>, off: usize) -> Result<bool, TranslateError> {
        use types::{F32X4, F64X2, I16X8, I32X4, I64X2, I8X16};
        use Operator as O;
        match *op {
            // ---- integer arithmetic ----
            O::I8x16Abs => vun!(self, off, I8X16, iabs),
            O::I16x8Abs => vun!(self, off, I16X8, iabs),
            O::I32x4Abs => vun!(self, off, I32X4, iabs),
            O::I64x2Abs => vun!(self, off, I64X2, iabs),
            O::I8x16Neg => vun!(self, off, I8X16, ineg),
            O::I16x8Neg => vun!(self, off, I16X8, ineg),
            O::I32x4Neg => vun!(self, off, I32X4, ineg),
            O::I64x2Neg => vun!(self, off, I64X2, ineg),
            O::I8x16Popcnt => vun!(self, off, I8X16, popcnt),
            O::I8x16Add => vbin!(self, off, I8X16, iadd),
            O::I16x8Add => vbin!(self, off, I16X8, iadd),
            O::I32x4Add => vbin!(self, off, I32X4, iadd),
            O::I64x2Add => vbin!(self, off, I64X2, iadd),
            O::I8x16Sub => vbin!(self, off, I8X16, isub),
            O::I16x8Sub => vbin!(self, off, I16X8, isub),
            O::I32x4Sub => vbin!(self, off, I32X4, isub),
            O::I64x2Sub => vbin!(self, off, I64X2, isub),
            O::I16x8Mul => vbin!(self, off, I16X8, imul),
            O::I32x4Mul => vbin!(self, off, I32X4, imul),
            O::I64x2Mul => vbin!(self, off, I64X2, imul),
            O::I8x16AddSatS => vbin!(self, off, I8X16, sadd_sat),
            O::I8x16AddSatU => vbin!(self, off, I8X16, uadd_sat),
            O::I8x16SubSatS => vbin!(self, off, I8X16, ssub_sat),
            O::I8x16SubSatU => vbin!(self, off, I8X16, usub_sat),
            O::I16x8AddSatS => vbin!(self, off, I16X8, sadd_sat),
            O::I16x8AddSatU => vbin!(self, off, I16X8, uadd_sat),
            O::I16x8SubSatS => vbin!(self, off, I16X8, ssub_sat),
            O::I16x8SubSatU => vbin!(self, off, I16X8, usub_sat),
            O::I8x16MinS => vbin!(self, off, I8X16, smin),
            O::I8x16MinU => vbin!(self, off, I8X16, umin),
            O::I8x16MaxS => vbin!(self, off, I8X16, smax),
            O::I8x16MaxU => vbin!(self, off, I8X16, umax),
            O::I16x8MinS => vbin!(self, off, I16X8, smin),
            O::I16x8MinU => vbin!(self, off, I16X8, umin),
            O::I16x8MaxS => vbin!(self, off, I16X8, smax),
            O::I16x8MaxU => vbin!(self, off, I16X8, umax),
            O::I32x4MinS => vbin!(self, off, I32X4, smin),
            O::I32x4MinU => vbin!(self, off, I32X4, umin),
            O::I32x4MaxS => vbin!(self, off, I32X4, smax),
            O::I32x4MaxU => vbin!(self, off, I32X4, umax),
            O::I8x16AvgrU => vbin!(self, off, I8X16, avg_round),
            O::I16x8AvgrU => vbin!(self, off, I16X8, avg_round),
            O::I16x8Q15MulrSatS => vbin!(self, off, I16X8, sqmul_round_sat),
            O::I32x4DotI16x8S => {
                let (a, b) = self.vpop2(I16X8, off)?;
                let (al, bl) = (self.widen(a, false, true), self.widen(b, false, true));
                let low = self.b.ins().imul(al, bl);
                let (ah, bh) = (self.widen(a, true, true), self.widen(b, true, true));
                let high = self.b.ins().imul(ah, bh);
                let v = self.b.ins().iadd_pairwise(low, high);
                self.vpush(v);
            }

            // ---- narrowing, widening ----
            O::I8x16NarrowI16x8S => vbin!(self, off, I16X8, snarrow),
            O::I8x16NarrowI16x8U => vbin!(self, off, I16X8, unarrow),
            O::I16x8NarrowI32x4S => vbin!(self, off, I32X4, snarrow),
            O::I16x8NarrowI32x4U => vbin!(self, off, I32X4, unarrow),
            O::I16x8ExtendLowI8x16S => vun!(self, off, I8X16, swiden_low),
            O::I16x8ExtendHighI8x16S => vun!(self, off, I8X16, swiden_high),
            O::I16x8ExtendLowI8x16U => vun!(self, off, I8X16, uwiden_low),
            O::I16x8ExtendHighI8x16U => vun!(self, off, I8X16, uwiden_high),
            O::I32x4ExtendLowI16x8S => vun!(self, off, I16X8, swiden_low),
            O::I32x4ExtendHighI16x8S => vun!(self, off, I16X8, swiden_high),
            O::I32x4ExtendLowI16x8U => vun!(self, off, I16X8, uwiden_low),
            O::I32x4ExtendHighI16x8U => vun!(self, off, I16X8, uwiden_high),
            O::I64x2ExtendLowI32x4S => vun!(self, off, I32X4, swiden_low),
            O::I64x2ExtendHighI32x4S => vun!(self, off, I32X4, swiden_high),
            O::I64x2ExtendLowI32x4U => vun!(self, off, I32X4, uwiden_low),
            O::I64x2ExtendHighI32x4U => vun!(self, off, I32X4, uwiden_high),
            O::I16x8ExtMulLowI8x16S => self.ext_mul(I8X16, false, true, off)?,
            O::I16x8ExtMulHighI8x16S => self.ext_mul(I8X16, true, true, off)?,
            O::I16x8ExtMulLowI8x16U => self.ext_mul(I8X16, false, false, off)?,
            O::I16x8ExtMulHighI8x16U => self.ext_mul(I8X16, true, false, off)?,
            O::I32x4ExtMulLowI16x8S => self.ext_mul(I16X8, false, true, off)?,
            O::I32x4ExtMulHighI16x8S => self.ext_mul(I16X8, true, true, off)?,
            O::I32x4ExtMulLowI16x8U => self.ext_mul(I16X8, false, false, off)?,
            O::I32x4ExtMulHighI16x8U => self.ext_mul(I16X8, true, false, off)?,
            O::I64x2ExtMulLowI32x4S => self.ext_mul(I32X4, false, true, off)?,
            O::I64x2ExtMulHighI32x4S => self.ext_mul(I32X4, true, true, off)?,
            O::I64x2ExtMulLowI32x4U => self.ext_mul(I32X4, false, false, off)?,
            O::I64x2ExtMulHighI32x4U => self.ext_mul(I32X4, true, false, off)?,
            O::I16x8ExtAddPairwiseI8x16S => self.ext_add_pairwise(I8X16, true, off)?,
            O::I16x8ExtAddPairwiseI8x16U => self.ext_add_pairwise(I8X16, false, off)?,
            O::I32x4ExtAddPairwiseI16x8S => self.ext_add_pairwise(I16X8, true, off)?,
            O::I32x4ExtAddPairwiseI16x8U => self.ext_add_pairwise(I16X8, false, off)?,

            // ---- float arithmetic ----
            O::F32x4Ceil => vun!(self, off, F32X4, ceil),
            O::F32x4Floor => vun!(self, off, F32X4, floor),
            O::F32x4Trunc => vun!(self, off, F32X4, trunc),
            O::F32x4Nearest => vun!(self, off, F32X4, nearest),
            O::F32x4Abs => vun!(self, off, F32X4, fabs),
            O::F32x4Neg => vun!(self, off, F32X4, fneg),
            O::F32x4Sqrt => vun!(self, off, F32X4, sqrt),
            O::F32x4Add => vbin!(self, off, F32X4, fadd),
            O::F32x4Sub => vbin!(self, off, F32X4, fsub),
            O::F32x4Mul => vbin!(self, off, F32X4, fmul),
            O::F32x4Div => vbin!(self, off, F32X4, fdiv),
            O::F32x4Min => vbin!(self, off, F32X4, fmin),
            O::F32x4Max => vbin!(self, off, F32X4, fmax),
            O::F32x4PMin => self.pseudo_min_max(F32X4, false, off)?,
            O::F32x4PMax => self.pseudo_min_max(F32X4, true, off)?,
            O::F64x2Ceil => vun!(self, off, F64X2, ceil),
            O::F64x2Floor => vun!(self, off, F64X2, floor),
            O::F64x2Trunc => vun!(self, off, F64X2, trunc),
            O::F64x2Nearest => vun!(self, off, F64X2, nearest),
            O::F64x2Abs => vun!(self, off, F64X2, fabs),
            O::F64x2Neg => vun!(self, off, F64X2, fneg),
            O::F64x2Sqrt => vun!(self, off, F64X2, sqrt),
            O::F64x2Add => vbin!(self, off, F64X2, fadd),
            O::F64x2Sub => vbin!(self, off, F64X2, fsub),
            O::F64x2Mul => vbin!(self, off, F64X2, fmul),
            O::F64x2Div => vbin!(self, off, F64X2, fdiv),
            O::F64x2Min => vbin!(self, off, F64X2, fmin),
            O::F64x2Max => vbin!(self, off, F64X2, fmax),
            O::F64x2PMin => self.pseudo_min_max(F64X2, false, off)?,
            O::F64x2PMax => self.pseudo_min_max(F64X2, true, off)?,

            // ---- conversions ----
            O::I32x4TruncSatF32x4S => vun!(self, off, F32X4, fcvt_to_sint_sat, I32X4),
            O::I32x4TruncSatF32x4U => vun!(self, off, F32X4, fcvt_to_uint_sat, I32X4),
            O::F32x4ConvertI32x4S => vun!(self, off, I32X4, fcvt_from_sint, F32X4),
            O::F32x4ConvertI32x4U => vun!(self, off, I32X4, fcvt_from_uint, F32X4),
            O::I32x4TruncSatF64x2SZero => self.trunc_sat_f64x2_zero(true, off)?,
            O::I32x4TruncSatF64x2UZero => self.trunc_sat_f64x2_zero(false, off)?,
            O::F64x2ConvertLowI32x4S => {
                let a = self.vpop(I32X4, off)?;
                let w = self.widen(a, false, true);
                let v = self.b.ins().fcvt_from_sint(F64X2, w);
                self.vpush(v);
            }
            O::F64x2ConvertLowI32x4U => {
                let a = self.vpop(I32X4, off)?;
                let w = self.widen(a, false, false);
                let v = self.b.ins().fcvt_from_uint(F64X2, w);
                self.vpush(v);
            }
            O::F32x4DemoteF64x2Zero => vun!(self, off, F64X2, fvdemote),
            O::F64x2PromoteLowF32x4 => vun!(self, off, F32X4, fvpromote_low),

            _ => return Ok(false),
        }
        Ok(true)
    }
}

//! The guest module, generated from a parameter table, and the bundles
//! built from its variants with `patch_format::diff`.
//!
//! Every version of every patchable function records `(function, version)`
//! through the host import `record` as its first call, then runs a command
//! loop: it asks the host for the next command (`cmd`, which parks the
//! thread while there is none) and calls what it is told to, or returns.
//! So the host decides every thread's exact frame set, and every safe point
//! a thread reaches is either a park inside `cmd` or a poll between two
//! commands.

use crate::ops::{Spec, ADDS, N};
use patch_format::{diff, BundleId, CallbackKind, DiffOptions, StateVersion};

/// Function id recorded by `f{i}`: `i`; by `add{k}`: `ADD_BASE + k`.
pub const ADD_BASE: i32 = 10;

/// Command codes returned by `cmd` (0 = return).
pub const CODE_CALL: i32 = 1;
/// `call_indirect` through table slot `j`.
pub const CODE_INDIRECT: i32 = 10;
/// Host call into export `f{j}`.
pub const CODE_HOST: i32 = 20;
/// Call of `add{k}`.
pub const CODE_ADDED: i32 = 30;
/// `call_indirect` through the last table slot, which holds `$tf`.
pub const CODE_TABLE: i32 = 40;
/// Function id recorded by `$tf` (in the table only: not exported, never
/// called directly).
pub const TF: i32 = 20;
/// Function id recorded by `$h` (called only by `$tf`; the function whose
/// signature bundles may change).
pub const H: i32 = 21;
/// Index of `$tf` in the module (5 imports, `run`, `f0..f{N-1}`).
pub const TF_INDEX: u32 = 6 + N as u32;

/// Callback kinds as recorded by the `cb` import.
pub const CB_KINDS: [CallbackKind; 4] = [
    CallbackKind::PrePatch,
    CallbackKind::PostPatch,
    CallbackKind::PreUnpatch,
    CallbackKind::PostUnpatch,
];

/// One version of the module: the version number of each `f{i}` (0 =
/// original), the added functions with their version, which added
/// functions each `f{i}` knows, and the callbacks.
struct Variant {
    versions: [i32; N as usize],
    /// `(k, version)` of each added function, in index order.
    adds: Vec<(u8, i32)>,
    /// Added functions every changed function (and added one) can call.
    knows: Vec<u8>,
    /// `Some(tag)`: `$tf` and `$h` are this bundle's, `$h` with a new
    /// signature.
    sig: Option<i32>,
    /// Callback functions: (tag, veto, post sleeps, added function that
    /// pre-patch and post-patch call).
    callbacks: Option<(i32, bool, bool, Option<u8>)>,
}

fn dispatch(knows: &[u8]) -> String {
    let mut s = String::new();
    for j in 0..N as i32 {
        s += &format!(
            "(if (i32.eq (local.get $c) (i32.const {})) (then (call $f{j})))\n",
            CODE_CALL + j
        );
        s += &format!(
            "(if (i32.eq (local.get $c) (i32.const {})) (then (call_indirect (type $t) (i32.const {j}))))\n",
            CODE_INDIRECT + j
        );
        s += &format!(
            "(if (i32.eq (local.get $c) (i32.const {})) (then (call $hostcall (i32.const {j}))))\n",
            CODE_HOST + j
        );
    }
    s += &format!(
        "(if (i32.eq (local.get $c) (i32.const {CODE_TABLE})) (then (call_indirect (type $t) (i32.const {N}))))\n"
    );
    for &k in knows {
        s += &format!(
            "(if (i32.eq (local.get $c) (i32.const {})) (then (call $add{k})))\n",
            CODE_ADDED + k as i32
        );
    }
    s
}

fn body(record: Option<(i32, i32)>, knows: &[u8]) -> String {
    let rec = record
        .map(|(f, v)| format!("(call $record (i32.const {f}) (i32.const {v}))"))
        .unwrap_or_default();
    format!(
        "(local $c i32)
  {rec}
  (block $exit
    (loop $l
      (local.set $c (call $cmd))
      (br_if $exit (i32.eqz (local.get $c)))
      {}
      (br $l)))",
        dispatch(knows)
    )
}

fn wat(v: &Variant) -> String {
    let mut m = String::from(
        r#"(module
  (import "env" "cmd" (func $cmd (result i32)))
  (import "env" "record" (func $record (param i32 i32)))
  (import "env" "hostcall" (func $hostcall (param i32)))
  (import "env" "cb" (func $cb (param i32 i32)))
  (import "env" "cbsleep" (func $cbsleep))
  (type $t (func))
"#,
    );
    m += &format!("  (table {} funcref)\n  (elem (i32.const 0) func", N + 1);
    for j in 0..N {
        m += &format!(" $f{j}");
    }
    m += " $tf)\n";
    m += &format!("  (func $run (export \"run\")\n  {})\n", body(None, &[]));
    for i in 0..N as usize {
        let ver = v.versions[i];
        let knows: &[u8] = if ver != 0 { &v.knows } else { &[] };
        m += &format!(
            "  (func $f{i} (export \"f{i}\")\n  {})\n",
            body(Some((i as i32, ver)), knows)
        );
    }
    // `$tf` calls `$h`; a signature-changing version passes two arguments.
    let (tv, args, params) = match v.sig {
        Some(t) => (t, "(i32.const 0) (i32.const 0)", "(param i32 i32)"),
        None => (0, "(i32.const 0)", "(param i32)"),
    };
    m += &format!(
        "  (func $tf (call $record (i32.const {TF}) (i32.const {tv})) (call $h {args}))\n"
    );
    m += &format!("  (func $h {params} (call $record (i32.const {H}) (i32.const {tv})))\n");
    for &(k, ver) in &v.adds {
        m += &format!(
            "  (func $add{k}\n  {})\n",
            body(Some((ADD_BASE + k as i32, ver)), &v.knows)
        );
    }
    if let Some((tag, veto, sleep, calls)) = v.callbacks {
        for (n, kind) in CB_KINDS.iter().enumerate() {
            let ret = if n == 0 && veto { 1 } else { 0 };
            let mut extra = String::new();
            if n == 1 && sleep {
                extra += "(call $cbsleep)";
            }
            if let (0 | 1, Some(k)) = (n, calls) {
                extra += &format!("(call $add{k})");
            }
            m += &format!(
                "  (func $cb_{} (result i32) (call $cb (i32.const {tag}) (i32.const {n})) {extra} (i32.const {ret}))\n",
                kind.name().replace('-', "_")
            );
        }
    }
    m += ")\n";
    m
}

/// WAT text of the original module.
pub fn base_wat() -> String {
    wat(&Variant {
        versions: [0; N as usize],
        adds: Vec::new(),
        knows: Vec::new(),
        sig: None,
        callbacks: None,
    })
}

/// The added functions of `spec`, in index order: `(k, index offset)`.
pub fn added(spec: &Spec) -> Vec<u8> {
    (0..ADDS).filter(|k| spec.adds & (1 << k) != 0).collect()
}

/// Build the bundle of `spec` with version number `tag`, against `base`
/// (binary). `sits_on` is the bundle id it sits on, if any.
///
/// # Panics
/// When `diff` refuses the variant (a generator bug, not a runtime one).
pub fn bundle(base: &[u8], tag: i32, spec: &Spec, sits_on: Option<BundleId>) -> Vec<u8> {
    let mut versions = [0; N as usize];
    for (i, v) in versions.iter_mut().enumerate() {
        if spec.funcs & (1 << i) != 0 {
            *v = tag;
        }
    }
    let adds = added(spec);
    let variant = Variant {
        versions,
        adds: adds.iter().map(|&k| (k, tag)).collect(),
        knows: adds.clone(),
        sig: spec.sig.then_some(tag),
        callbacks: Some((
            tag,
            spec.veto,
            spec.post_sleep,
            spec.cb_calls_added.then(|| adds.first().copied()).flatten(),
        )),
    };
    let new = wat::parse_str(wat(&variant)).expect("variant parses");
    let immediate = (0..N)
        .filter(|i| spec.immediate & (1 << i) != 0)
        .map(|i| format!("f{i}"))
        .collect();
    let sv = |(id, version): (u32, u32)| StateVersion { id, version };
    let opts = DiffOptions {
        name: format!("b{tag}"),
        immediate,
        replace: spec.replace,
        states: spec.state.map(sv).into_iter().collect(),
        requires: spec.requires.map(sv).into_iter().collect(),
        sits_on: sits_on.into_iter().collect(),
        callbacks: CB_KINDS
            .iter()
            .map(|k| (*k, format!("cb_{}", k.name().replace('-', "_"))))
            .collect(),
        ..Default::default()
    };
    diff(base, &new, &opts)
        .unwrap_or_else(|e| panic!("diff refused the variant of {spec:?}: {e}"))
        .bundle
        .to_bytes()
}

/// A bundle id no bundle has (what `sits_on` names when the patch it
/// points at was never applied).
pub fn unknown_bundle_id() -> BundleId {
    BundleId([0xab; 32])
}

fn sleb(mut v: i64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        let done = (v == 0 && byte & 0x40 == 0) || (v == -1 && byte & 0x40 != 0);
        out.push(if done { byte } else { byte | 0x80 });
        if done {
            return;
        }
    }
}

/// A crafted bundle (one `diff` refuses to make) that changes the type of
/// `$tf`, a function in the table, to `(i32) -> ()`: the runtime must
/// refuse it whatever the bundle claims (issue 11 item 10).
pub fn table_signature_bundle(base: &[u8], tag: i32) -> Vec<u8> {
    use patch_format::{BundleBuilder, Entry, EntryKind, ModuleHash, TargetInterface};
    use wasm_patch_runtime::{FuncType, ValType};
    let iface = TargetInterface::from_module(base).expect("base interface");
    let mut b = BundleBuilder::new(ModuleHash::of(base), iface);
    let ty = FuncType::new([ValType::I32], []);
    let t = b.add_type(&ty).expect("type");
    b.set_func_type(TF_INDEX, t).expect("set type");
    // No locals; record(TF, tag); end.
    let mut body = vec![0x00, 0x41];
    sleb(TF as i64, &mut body);
    body.push(0x41);
    sleb(tag as i64, &mut body);
    body.extend_from_slice(&[0x10, 0x01, 0x0b]);
    b.entry(Entry {
        kind: EntryKind::Replace {
            target_index: TF_INDEX,
        },
        name: "tf".into(),
        type_index: t,
        ty,
        immediate: false,
        body,
    });
    b.build().expect("crafted bundle builds").to_bytes()
}

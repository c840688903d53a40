//! Forged transfer maps (docs/transfer.md, "What apply checks"): a bundle
//! whose transfer section was edited at random after diff, on workers
//! whose loops carry locals only, loop parameters, or operands below the
//! header. Whatever the edit, the host never panics or crashes, at apply
//! or while the workers run on: a map the runtime refuses leaves nothing
//! started and nothing applied, and the workers run on in the old code to
//! their normal end; a map it accepts may run (a forged map it cannot tell
//! from a true one is the bundle author's), but a guest trap is the worst
//! it may do.

use crate::transfer::{bundle, transfer_opts, with_transfers};
use crate::transitions::{func, setup_host_with};
use patch_format::transfer::{Transfers, FRESH};
use proptest::prelude::*;
use wasm_patch_runtime::*;
use wasmparser::ValType;

/// One random edit of a map's fields (indices are taken modulo lengths).
#[derive(Clone, Debug)]
enum Edit {
    Local(u8, u32),
    LocalFresh(u8),
    Locals(u8),
    Header(u8, u32, u32),
    PushHeader(u32, u32),
    Param(u8, u8, u32),
    PushParam(u8, u32),
    PopParam(u8),
    OldType(u8, u8),
    NewType(u8, u8),
    Func(u32),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<u8>(), 0u32..8).prop_map(|(i, v)| Edit::Local(i, v)),
        any::<u8>().prop_map(Edit::LocalFresh),
        (0u8..8).prop_map(Edit::Locals),
        (any::<u8>(), 0u32..3, 0u32..3).prop_map(|(i, a, b)| Edit::Header(i, a, b)),
        (0u32..3, 0u32..3).prop_map(|(a, b)| Edit::PushHeader(a, b)),
        (any::<u8>(), any::<u8>(), 0u32..5).prop_map(|(k, j, v)| Edit::Param(k, j, v)),
        (any::<u8>(), 0u32..5).prop_map(|(k, v)| Edit::PushParam(k, v)),
        any::<u8>().prop_map(Edit::PopParam),
        (any::<u8>(), 0u8..5).prop_map(|(i, t)| Edit::OldType(i, t)),
        (any::<u8>(), 0u8..5).prop_map(|(i, t)| Edit::NewType(i, t)),
        (0u32..6).prop_map(Edit::Func),
    ]
}

fn val_type(t: u8) -> ValType {
    [
        ValType::I32,
        ValType::I64,
        ValType::F32,
        ValType::F64,
        ValType::V128,
    ][t as usize % 5]
}

fn apply_edit(t: &mut Transfers, e: &Edit) {
    let Some(m) = t.maps.first_mut() else { return };
    let at = |i: u8, n: usize| (n > 0).then(|| i as usize % n);
    match *e {
        Edit::Local(i, v) => {
            if let Some(i) = at(i, m.locals.len()) {
                m.locals[i] = v;
            }
        }
        Edit::LocalFresh(i) => {
            if let Some(i) = at(i, m.locals.len()) {
                m.locals[i] = FRESH;
            }
        }
        Edit::Locals(n) => m.locals.resize(n as usize, 0),
        Edit::Header(i, a, b) => {
            if let Some(i) = at(i, m.headers.len()) {
                m.headers[i] = (a, b);
            }
        }
        Edit::PushHeader(a, b) => {
            m.headers.push((a, b));
            if !m.params.is_empty() {
                m.params.push(Vec::new());
            }
        }
        Edit::Param(k, j, v) => {
            if let Some(k) = at(k, m.params.len()) {
                if let Some(j) = at(j, m.params[k].len()) {
                    m.params[k][j] = v;
                }
            }
        }
        Edit::PushParam(k, v) => match at(k, m.params.len()) {
            Some(k) => m.params[k].push(v),
            None => m.params = vec![vec![v]; m.headers.len().max(1)],
        },
        Edit::PopParam(k) => {
            if let Some(k) = at(k, m.params.len()) {
                m.params[k].pop();
            }
        }
        Edit::OldType(i, ty) => {
            if let Some(i) = at(i, m.old_locals.len()) {
                m.old_locals[i] = val_type(ty);
            }
        }
        Edit::NewType(i, ty) => {
            if let Some(i) = at(i, m.new_locals.len()) {
                m.new_locals[i] = val_type(ty);
            }
        }
        Edit::Func(f) => m.func = f,
    }
}

/// The three worker shapes and their old and new sources.
fn pair(shape: u8) -> (String, String) {
    use crate::transfer_params::{worker_above, worker_of};
    match shape % 3 {
        0 => (
            crate::transfer_random::worker(1, "(local $i i32) (local $acc i32)"),
            crate::transfer_random::worker(1000, "(local $acc i32) (local $i i32)"),
        ),
        1 => (
            worker_of(7, &["$i", "$acc", "$n"]),
            worker_of(1000, &["$n", "$i", "$acc"]),
        ),
        _ => (worker_above(7), worker_above(1000)),
    }
}

fn run(shape: u8, edits: &[Edit]) -> Result<(), String> {
    let (old, new) = pair(shape);
    let b = bundle(&old, &new, &transfer_opts(&["worker"]));
    let mut t = b.transfers().clone();
    if t.maps.is_empty() {
        return Err(format!("shape {shape}: diff made no map: {:?}", t.refused));
    }
    for e in edits {
        apply_edit(&mut t, e);
    }
    let bytes = with_transfers(&b, &t);
    let engine = Engine::new(Config {
        frame_transfer: true,
        ..Default::default()
    })
    .unwrap();
    let (mut store, inst) = setup_host_with(engine, &old);
    let ts: Vec<ThreadId> = (0..2)
        .map(|_| store.spawn(func(&store, inst, "worker"), &[]).unwrap())
        .collect();
    store.run_steps(6);
    match store.apply(inst, &bytes, &ApplyOptions::default()) {
        Err(e) => {
            if store.transition_patch().is_some() || !store.applied().is_empty() {
                return Err(format!("refused ({e}), yet something changed"));
            }
            store.run_steps(12);
            func(&store, inst, "stop")
                .call(&mut store, &[])
                .map_err(|e| e.to_string())?;
            for &id in &ts {
                store
                    .join(id)
                    .map_err(|e| format!("{id} after a refused bundle: {e}"))?;
            }
        }
        Ok(_) => {
            // Accepted: the workers may move through the forged map; a
            // trap is theirs to have, a host crash is not.
            store.run_steps(24);
            let _ = func(&store, inst, "stop").call(&mut store, &[]);
            for &id in &ts {
                let _ = store.join(id);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        // FORGED_CASES=N explores more.
        cases: std::env::var("FORGED_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(96),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]
    #[test]
    fn forged_transfer_maps_never_crash_the_host_and_a_refusal_changes_nothing(
        shape in any::<u8>(),
        edits in proptest::collection::vec(edit(), 1..4),
    ) {
        run(shape, &edits).map_err(TestCaseError::fail)?;
    }
}

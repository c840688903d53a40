use wasm_patch_runtime::*;
fn main() {
    let engine = Engine::default();
    let module = Module::new(&engine, r#"(module
      (import "wasm-patch" "yield" (func $yield))
      (import "env" "log" (func $log (param i32)))
      (memory 1)
      (table 2 funcref) (elem (i32.const 0) $fac $boom)
      (type $t (func (param i64) (result i64)))
      (func $fac (export "fac") (param i64) (result i64)
        local.get 0 i64.eqz if (result i64) i64.const 1 else local.get 0 local.get 0 i64.const 1 i64.sub i32.const 0 call_indirect (type $t) i64.mul end)
      (func $boom (export "boom") (param i64) (result i64) local.get 0 call $inner)
      (func $inner (param i64) (result i64) i32.const 100000 i32.load drop unreachable)
      (func $rec (export "rec") (param i32) (result i32) local.get 0 call $rec)
      (func (export "loop") (param i32) (result i32) (local i32)
        loop local.get 1 i32.const 1 i32.add local.set 1 local.get 1 call $log local.get 1 local.get 0 i32.lt_s br_if 0 end local.get 1)
      (func (export "oob") (result i32) i32.const 70000 i32.load)
      (func (export "div") (param i32 i32) (result i32) local.get 0 local.get 1 i32.div_s)
    )"#).unwrap();
    let mut store = Store::new(&engine, 0i32);
    let mut linker = Linker::new(&engine);
    linker.add_thread_abi();
    linker.func_new(
        "env",
        "log",
        FuncType::new([ValType::I32], []),
        |c, a, _| {
            *c.data_mut() += a[0].i32().unwrap();
            c.yield_now()
        },
    );
    let inst = linker.instantiate(&mut store, &module).unwrap();
    let fac = inst.get_func(&store, "fac").unwrap();
    println!("fac(20) = {:?}", fac.call(&mut store, &[Val::I64(20)]));
    println!(
        "boom = {}",
        inst.get_func(&store, "boom")
            .unwrap()
            .call(&mut store, &[Val::I64(1)])
            .unwrap_err()
    );
    println!(
        "rec = {}",
        inst.get_func(&store, "rec")
            .unwrap()
            .call(&mut store, &[Val::I32(1)])
            .unwrap_err()
    );
    println!(
        "oob = {}",
        inst.get_func(&store, "oob")
            .unwrap()
            .call(&mut store, &[])
            .unwrap_err()
    );
    println!(
        "div = {}",
        inst.get_func(&store, "div")
            .unwrap()
            .call(&mut store, &[Val::I32(1), Val::I32(0)])
            .unwrap_err()
    );
    println!(
        "div = {}",
        inst.get_func(&store, "div")
            .unwrap()
            .call(&mut store, &[Val::I32(i32::MIN), Val::I32(-1)])
            .unwrap_err()
    );
    let lp = inst.get_func(&store, "loop").unwrap();
    let a = store.spawn(lp, &[Val::I32(5)]).unwrap();
    let b = store.spawn(lp, &[Val::I32(7)]).unwrap();
    store.run().unwrap();
    println!(
        "threads {:?} {:?} data {}",
        store.take_result(a),
        store.take_result(b),
        store.data()
    );
}

//! Compare patchable and baseline (direct-call, no-poll) builds of a guest.
//! Usage: cargo run --release -p wasm-patch-runtime --example baseline -- FILE.wasm [ARG]
use wasm_patch_runtime::*;
fn main() {
    let mut a = std::env::args().skip(1);
    let file = a.next().expect("file");
    let arg: i32 = a.next().map(|s| s.parse().unwrap()).unwrap_or(1);
    for patchable in [true, false] {
        let engine = Engine::new(Config {
            patchable,
            ..Config::default()
        })
        .unwrap();
        let t0 = std::time::Instant::now();
        let module = Module::from_file(&engine, &file).unwrap();
        let ct = t0.elapsed();
        let mut store = Store::new(&engine, ());
        let inst = Linker::new(&engine)
            .instantiate(&mut store, &module)
            .unwrap();
        let run = inst.get_func(&store, "run").unwrap();
        let mut times = vec![];
        let mut r = vec![];
        for _ in 0..5 {
            let t = std::time::Instant::now();
            r = run.call(&mut store, &[Val::I32(arg)]).unwrap();
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "patchable={patchable} compile={ct:?} median={:?} result={:?}",
            times[2], r
        );
    }
}

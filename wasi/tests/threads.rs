//! Guest threads share one WASI state: a descriptor opened by one guest
//! thread is usable by another, and `proc_exit` in a spawned thread is seen
//! by the embedder through `WasiHandle::exit_code`.

use wasm_patch_runtime::{Engine, Linker, Module, Store};
use wasm_patch_wasi::{add_wasi, WasiCtx};

const GUEST: &str = r#"(module
  (import "wasm-patch" "spawn" (func $spawn (param i32 i32) (result i32)))
  (import "wasm-patch" "yield" (func $yield))
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (table 1 funcref)
  (elem (i32.const 0) $writer)
  (global $done (mut i32) (i32.const 0))
  (data (i32.const 16) "shared.txt")
  (data (i32.const 32) "\40\00\00\00\07\00\00\00")
  (data (i32.const 64) "written")
  ;; Runs on its own guest thread: writes to the fd thread 1 opened.
  (func $writer (param $fd i32)
    (global.set $done (call $write (local.get $fd) (i32.const 32) (i32.const 1) (i32.const 48)))
    (call $exit (i32.const 9)))
  (func (export "main") (result i32)
    (local $e i32)
    ;; create + write rights
    (local.set $e (call $open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 10)
      (i32.const 1) (i64.const 0x40) (i64.const 0) (i32.const 0) (i32.const 8)))
    (if (local.get $e) (then (return (i32.sub (i32.const 0) (local.get $e)))))
    (drop (call $spawn (i32.const 0) (i32.load (i32.const 8))))
    (i32.load (i32.const 8))))
"#;

#[test]
fn threads_share_descriptors_and_exit_status() {
    let dir = std::env::temp_dir().join(format!("wasm-patch-wasi-threads-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let engine = Engine::default();
    let module = Module::new(&engine, GUEST).unwrap();
    let mut store = Store::new(&engine, ());
    let mut linker = Linker::new(&engine);
    linker.add_thread_abi();
    let mut ctx = WasiCtx::new();
    ctx.preopen_dir(&dir, "/").unwrap();
    let wasi = add_wasi(&mut linker, ctx).unwrap();
    let inst = linker.instantiate(&mut store, &module).unwrap();
    let main = inst
        .get_func(&store, "main")
        .unwrap()
        .typed::<(), i32>(&store)
        .unwrap();
    let fd = main.call(&mut store, ()).unwrap();
    assert!(fd > 3, "path_open failed with errno {}", -fd);
    // Let the spawned writer run to its end.
    store.run().unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("shared.txt")).unwrap(),
        "written",
        "the fd opened by the main thread was usable by the writer thread"
    );
    assert_eq!(wasi.exit_code(), Some(9));
    let _ = std::fs::remove_dir_all(&dir);
}

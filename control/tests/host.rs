//! A host serving the control socket for its own store and instance with
//! this library alone (no CLI crate): a client applies a bundle over the
//! socket while the host's guest thread runs, and the host sees the new
//! code; a second server on the same path is refused.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use wasm_patch_control::{to_hex, ControlError, Server};
use wasm_patch_runtime::{Engine, Linker, Module, Store, Val};

fn module(fee: i32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
          (import "wasm-patch" "yield" (func $yield))
          (global $total (mut i32) (i32.const 0))
          (func $fee (result i32) i32.const {fee})
          (func (export "worker") (param i32)
            (loop $l
              (global.set $total (i32.add (global.get $total) (call $fee)))
              call $yield
              br $l))
          (func (export "fee") (result i32) call $fee))"#
    ))
    .unwrap()
}

#[test]
fn a_host_serves_the_control_socket_for_its_own_store() {
    let engine = Engine::default();
    let module1 = Module::new(&engine, module(1)).unwrap();
    let mut linker: Linker<()> = Linker::new(&engine);
    linker.add_thread_abi();
    let mut store = Store::new(&engine, ());
    let inst = linker.instantiate(&mut store, &module1).unwrap();
    let worker = inst.get_func(&store, "worker").unwrap();
    store.spawn(worker, &[Val::I32(0)]).unwrap();

    let bundle = patch_format::diff(&module(1), &module(2), &Default::default())
        .unwrap()
        .bundle
        .to_bytes();
    let sock = std::env::temp_dir().join(format!("wpc-host-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let mut server = Server::bind(&sock).unwrap();
    match Server::bind(&sock) {
        Err(ControlError::Refused(m)) => assert!(m.contains("already listening"), "{m}"),
        other => panic!("a second server on the path: {:?}", other.map(|_| ())),
    }

    let path = sock.clone();
    let client = std::thread::spawn(move || {
        let mut s = UnixStream::connect(&path).unwrap();
        let req = serde_json::json!({"op": "apply", "bundle": to_hex(&bundle)});
        writeln!(s, "{req}").unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        serde_json::from_str::<Value>(&line).unwrap()
    });
    // The host's own loop: serve the socket, run the guest, answer waiters.
    while !client.is_finished() {
        server.poll(&mut store, inst);
        store.run_steps(16);
        server.after_steps(&store);
    }
    let reply = client.join().unwrap();
    assert_eq!(reply["ok"], Value::Bool(true), "{reply}");
    assert_eq!(reply["patch"], Value::from(1));
    let fee = inst.get_typed_func::<(), i32>(&store, "fee").unwrap();
    assert_eq!(fee.call(&mut store, ()).unwrap(), 2);
    assert_eq!(store.applied().len(), 1);
    server.shutdown();
    assert!(!sock.exists(), "the socket is removed at shutdown");
}

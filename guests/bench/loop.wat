;; A guest whose threads live in one loop for ever (`wasm-patch bench
;; transition --frame-transfer`, docs/transfer.md): each turn does a little
;; work, yields inside the callee `$pause`, and updates two loop-carried
;; locals. `loop-v2.wat` changes the loop function itself (the increment of
;; its generator), so without a transfer map no thread ever leaves the changed code;
;; with `diff --transfer worker` each thread moves at its next loop header.
(module
  (import "wasm-patch" "yield" (func $yield))
  (global $sink (mut i64) (i64.const 0))
  (func $pause (call $yield))
  (func (export "worker") (param $id i32) (local $x i32) (local $turns i64)
    (local.set $x (local.get $id))
    (loop $l
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1103515245))
                             (i32.const 12345)))
      (call $pause)
      (local.set $turns (i64.add (local.get $turns) (i64.const 1)))
      (global.set $sink (i64.add (global.get $sink) (local.get $turns)))
      (br $l))))

;; `loop.wat` with a different constant in the loop (see there).
(module
  (import "wasm-patch" "yield" (func $yield))
  (global $sink (mut i64) (i64.const 0))
  (func $pause (call $yield))
  (func (export "worker") (param $id i32) (local $x i32) (local $turns i64)
    (local.set $x (local.get $id))
    (loop $l
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1103515245))
                             (i32.const 54321)))
      (call $pause)
      (local.set $turns (i64.add (local.get $turns) (i64.const 1)))
      (global.set $sink (i64.add (global.get $sink) (local.get $turns)))
      (br $l))))

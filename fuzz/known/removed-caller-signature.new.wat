;; See removed-caller-signature.old.wat.
(module
  (func $g (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
  (func $f (export "f") (result i32) i32.const 1 i32.const 2 call $g))

;; M': see cumulative-dropped-added.m.wat.
(module
  (func $g (param i32) (result i32) local.get 0)
  (func $f (export "f") (result i32) call $h)
  (func $h (result i32) i32.const 5 call $g))

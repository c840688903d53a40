;; M'': see cumulative-dropped-caller.m.wat.
(module
  (func $g (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
  (func $k (param i32) (result i32) i32.const 7)
  (func $f (export "f") (result i32) i32.const 2 i32.const 3 call $g))

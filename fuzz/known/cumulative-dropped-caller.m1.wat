;; M': see cumulative-dropped-caller.m.wat.
(module
  (func $g (param i32) (result i32) local.get 0)
  (func $k (param i32) (result i32) i32.const 7)
  (func $r (result i32) i32.const 1 call $g)
  (func $f (export "f") (result i32) call $r))

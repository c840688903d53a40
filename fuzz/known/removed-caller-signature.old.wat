;; Patch-equivalence fuzzer, first found at seed 1000963 (reduced by hand).
;; `$r` calls `$g`; the new build removes `$r` and gives `$g` a parameter.
;; diff carried it (it looked for callers of `$g` in the new build only),
;; and the runtime refused the bundle: "function g cannot change its
;; signature: its caller r is not in the bundle" (`$r` stays in the target).
(module
  (func $g (param i32) (result i32) local.get 0)
  (func $r (result i32) i32.const 1 call $g)
  (func $f (export "f") (result i32) call $r))

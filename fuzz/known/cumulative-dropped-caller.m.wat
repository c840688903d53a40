;; Patch-equivalence fuzzer, first found at seed 4003990 (reduced by hand).
;; Bundle 1 = diff M M': `$r` now calls `$g` instead of `$k`.
;; Bundle 2 = diff --replace M M'': `$r` is gone, `$f` no longer calls it,
;; and `$g` gets one more parameter. diff carries both (in M, `$r` does not
;; call `$g`), but the runtime refuses bundle 2 over bundle 1: "function g
;; cannot change its signature: its caller r (its version from patch 1) is
;; not in the bundle" — although the cumulative bundle takes that version
;; out of the new world (`$r` goes back to M's, which does not call `$g`).
(module
  (func $g (param i32) (result i32) local.get 0)
  (func $k (param i32) (result i32) i32.const 7)
  (func $r (result i32) i32.const 1 call $k)
  (func $f (export "f") (result i32) call $r))

;; Version 2 of `transition.wat`: `$handle` adds 2 instead of 1. The
;; bundle `transition.wpatch` is `wasm-patch diff transition.wat
;; transition-v2.wat -o transition.wpatch`.
;;
;; The transition benchmark's guest (`wasm-patch bench transition`): each
;; thread alternates between the changed function `$handle` and the
;; unchanged `$idle`, yielding once inside each, so that a thread stopped
;; by the scheduler holds `$handle` on its stack half of the time. Odd
;; threads start with an extra yield, so that when a bundle lands about
;; half of the threads are blocked and switch at their next time slice.
;; `transition-v2.wat` differs only in `$handle`'s constant.
(module
  (import "wasm-patch" "yield" (func $yield))
  (global $sink (mut i32) (i32.const 0))
  ;; A little work around each yield: a request handler's loop.
  (func $work (param $x i32) (result i32) (local $i i32)
    (loop $l
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1103515245))
                             (i32.const 12345)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 64))))
    (local.get $x))
  (func $handle (param $x i32) (result i32)
    (local.set $x (call $work (local.get $x)))
    (call $yield)
    (i32.add (call $work (local.get $x)) (i32.const 2)))
  (func $idle (param $x i32) (result i32)
    (local.set $x (call $work (local.get $x)))
    (call $yield)
    (call $work (local.get $x)))
  (func (export "worker") (param $id i32) (local $x i32)
    (local.set $x (local.get $id))
    (if (i32.and (local.get $id) (i32.const 1))
      (then (call $yield)))
    (loop $l
      (local.set $x (call $handle (local.get $x)))
      (local.set $x (call $idle (local.get $x)))
      (global.set $sink (local.get $x))
      (br $l))))

;; Long-running loops must run to the right answer: every loop back-edge and
;; function entry is a poll where the thread may be preempted (time slice
;; 5 ms), so these loops are suspended and resumed many times with live
;; values of every type in registers and on the stack.

(module
  ;; Four accumulators of four types, all live across the back-edge poll.
  (func (export "mixed") (param $n i32) (result i32 i64 f64 f32)
    (local $i i32) (local $a i32) (local $b i64) (local $c f64) (local $d f32)
    (local.set $a (i32.const 1))
    (local.set $b (i64.const 0x9E3779B97F4A7C15))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $a (i32.add (i32.mul (local.get $a) (i32.const 31)) (local.get $i)))
        (local.set $b (i64.xor (local.get $b) (i64.shl (local.get $b) (i64.const 13))))
        (local.set $b (i64.xor (local.get $b) (i64.shr_u (local.get $b) (i64.const 7))))
        (local.set $b (i64.xor (local.get $b) (i64.shl (local.get $b) (i64.const 17))))
        (local.set $c (f64.add (local.get $c) (f64.const 0.5)))
        (local.set $d (f32.add (local.get $d) (f32.const 1)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (local.get $a) (local.get $b) (local.get $c) (local.get $d))

  ;; Nested loops: the inner back-edge polls millions of times.
  (func (export "nested") (param $n i32) (param $m i32) (result i32)
    (local $i i32) (local $j i32) (local $acc i32)
    (local.set $acc (i32.const 7))
    (block $outer_done
      (loop $outer
        (br_if $outer_done (i32.ge_s (local.get $i) (local.get $n)))
        (local.set $j (i32.const 0))
        (block $inner_done
          (loop $inner
            (br_if $inner_done (i32.ge_s (local.get $j) (local.get $m)))
            (local.set $acc
              (i32.add (i32.mul (local.get $acc) (i32.const 1664525))
                       (i32.xor (local.get $i) (local.get $j))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $inner)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $outer)))
    (local.get $acc))

  ;; A loop whose body dispatches through br_table.
  (func (export "dispatch") (param $n i32) (result i32)
    (local $i i32) (local $x i32)
    (local.set $x (i32.const 12345))
    (block $done
      (loop $l
        (br_if $done (i32.ge_s (local.get $i) (local.get $n)))
        (block $next
          (block $c3
            (block $c2
              (block $c1
                (block $c0
                  (br_table $c0 $c1 $c2 $c3 (i32.rem_u (local.get $i) (i32.const 4))))
                (local.set $x (i32.add (local.get $x) (local.get $i)))
                (br $next))
              (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $i) (i32.const 1))))
              (br $next))
            (local.set $x (i32.sub (local.get $x) (i32.const 3)))
            (br $next))
          (local.set $x (i32.rotl (local.get $x) (i32.const 5))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (local.get $x))

;; A loop carrying its state as block parameters and results.
  (func (export "params") (param $n i32) (result i64)
    (local $acc i64)
    (local.get $n) (i64.const 1)
    (loop $l (param i32 i64) (result i32 i64)
      (local.set $acc)
      (local.set $n)
      (local.set $acc
        (i64.add (i64.mul (local.get $acc) (i64.const 3)) (i64.extend_i32_s (local.get $n))))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (local.get $n) (local.get $acc)
      (br_if $l (i32.ne (local.get $n) (i32.const 0))))
    (local.set $acc)
    (drop)
    (local.get $acc))

  ;; Floating point state (and a float <-> int round trip) across polls.
  (func (export "float") (param $n i32) (result f64)
    (local $i i32) (local $x f64)
    (local.set $x (f64.const 1))
    (block $done
      (loop $l
        (br_if $done (i32.ge_s (local.get $i) (local.get $n)))
        (local.set $x (f64.mul (local.get $x) (f64.const 1.0000001)))
        (local.set $x (f64.add (local.get $x) (f64.const 0.5)))
        (local.set $x
          (f64.sub (local.get $x)
            (f64.mul (f64.convert_i64_s (i64.trunc_f64_s (f64.div (local.get $x) (f64.const 1024))))
                     (f64.const 1024))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (local.get $x))

  ;; Loops at every level of a recursion: preempted with many frames live.
  (func $rec (export "rec") (param $d i32) (param $n i64) (result i64)
    (local $i i64) (local $s i64)
    (if (i32.eqz (local.get $d)) (then (return (i64.const 0))))
    (block $done
      (loop $l
        (br_if $done (i64.ge_s (local.get $i) (local.get $n)))
        (local.set $s (i64.add (local.get $s) (i64.mul (local.get $i) (i64.extend_i32_u (local.get $d)))))
        (local.set $i (i64.add (local.get $i) (i64.const 1)))
        (br $l)))
    (i64.add (local.get $s) (call $rec (i32.sub (local.get $d) (i32.const 1)) (local.get $n))))

  ;; An empty counting loop: the poll is nearly all the work.
  (func (export "count") (param $n i32) (result i32) (local $i i32)
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
    (local.get $i))

  ;; A loop that exits through a trap after many iterations.
  (func (export "count_then_trap") (param $n i32) (result i32) (local $i i32)
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
    (i32.div_u (local.get $i) (i32.sub (local.get $i) (local.get $n))))
)

(assert_return (invoke "mixed" (i32.const 0))
  (i32.const 1) (i64.const 0x9E3779B97F4A7C15) (f64.const 0) (f32.const 0))
(assert_return (invoke "mixed" (i32.const 10))
  (i32.const -1631921466) (i64.const -8102351954660651634) (f64.const 5) (f32.const 10))
(assert_return (invoke "mixed" (i32.const 3000000))
  (i32.const -1481520287) (i64.const 7597078294810803616) (f64.const 1500000) (f32.const 3000000))
(assert_return (invoke "mixed" (i32.const 20000000))
  (i32.const -1167329663) (i64.const 2917687130127607331) (f64.const 10000000) (f32.const 16777216))
(assert_return (invoke "nested" (i32.const 3000) (i32.const 3000)) (i32.const 5632167))
(assert_return (invoke "dispatch" (i32.const 5000000)) (i32.const 917089075))
(assert_return (invoke "params" (i32.const 1)) (i64.const 4))
(assert_return (invoke "params" (i32.const 5000000)) (i64.const -4932359218656677791))
(assert_return (invoke "float" (i32.const 10000000)) (f64.const 0x1.40f5a66727298p+8))
(assert_return (invoke "rec" (i32.const 50) (i64.const 200000)) (i64.const 25499872500000))
(assert_return (invoke "count" (i32.const 30000000)) (i32.const 30000000))
(assert_return (invoke "count" (i32.const 0)) (i32.const 1))
(assert_trap (invoke "count_then_trap" (i32.const 20000000)) "integer divide by zero")
;; The instance is fine after the trap.
(assert_return (invoke "count" (i32.const 1000)) (i32.const 1000))

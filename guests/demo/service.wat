;; The demo service, version 1 (it has a bug).
;;
;; Three worker threads each print a report every 200 ms:
;;   worker 2 report #7: sum of 1..20 = 190
;; The sum is wrong: `sum_to` stops one short (1..20 is 210). The fix is in
;; service-fixed.wat; see README.md for patching it while it runs.
;;
;; Runs forever as `_start`; `serve SECONDS` stops after SECONDS
;; (`wasm-patch run --invoke serve service.wat 30`).
(module
  (import "wasm-patch" "spawn" (func $spawn (param i32 i32) (result i32)))
  (import "wasm-patch" "sleep" (func $sleep (param i64)))
  (import "env" "print_line" (func $print_line (param i32 i32)))
  (memory 1)
  (table 1 funcref)
  (elem (i32.const 0) $worker)
  (data (i32.const 0) "demo service started: 3 workers, a report every 200 ms")
  (data (i32.const 64) "worker ")
  (data (i32.const 72) " report #")
  (data (i32.const 88) ": sum of 1..")
  (data (i32.const 104) " = ")

  ;; 1 + 2 + ... + n.  BUG: stops at n - 1.
  (func $sum_to (param $n i32) (result i32)
    (local $i i32) (local $acc i32)
    i32.const 1
    local.set $i
    block $done
      loop $next
        local.get $i
        local.get $n
        i32.ge_s            ;; should be i32.gt_s
        br_if $done
        local.get $acc
        local.get $i
        i32.add
        local.set $acc
        local.get $i
        i32.const 1
        i32.add
        local.set $i
        br $next
      end
    end
    local.get $acc)

  ;; Copies $len bytes from $src to $at; returns the address after them.
  (func $put_str (param $at i32) (param $src i32) (param $len i32) (result i32)
    local.get $at
    local.get $src
    local.get $len
    memory.copy
    local.get $at
    local.get $len
    i32.add)

  ;; Writes the decimal digits of $v at $at; returns the address after them.
  (func $put_u32 (param $at i32) (param $v i32) (result i32)
    (local $len i32) (local $t i32) (local $i i32)
    local.get $v
    local.set $t
    i32.const 1
    local.set $len
    block $b
      loop $l
        local.get $t
        i32.const 10
        i32.lt_u
        br_if $b
        local.get $t
        i32.const 10
        i32.div_u
        local.set $t
        local.get $len
        i32.const 1
        i32.add
        local.set $len
        br $l
      end
    end
    local.get $len
    local.set $i
    loop $w
      local.get $at
      local.get $i
      i32.add
      i32.const 1
      i32.sub
      local.get $v
      i32.const 10
      i32.rem_u
      i32.const 48
      i32.add
      i32.store8
      local.get $v
      i32.const 10
      i32.div_u
      local.set $v
      local.get $i
      i32.const 1
      i32.sub
      local.tee $i
      br_if $w
    end
    local.get $at
    local.get $len
    i32.add)

  ;; "worker ID report #K: sum of 1..N = SUM" as one line.
  (func $report (param $id i32) (param $k i32) (param $n i32)
    (local $buf i32) (local $p i32)
    ;; Each worker formats in its own buffer.
    i32.const 1024
    local.get $id
    i32.const 128
    i32.mul
    i32.add
    local.tee $buf
    i32.const 64
    i32.const 7
    call $put_str
    local.get $id
    call $put_u32
    i32.const 72
    i32.const 9
    call $put_str
    local.get $k
    call $put_u32
    i32.const 88
    i32.const 12
    call $put_str
    local.get $n
    call $put_u32
    i32.const 104
    i32.const 3
    call $put_str
    local.get $n
    call $sum_to
    call $put_u32
    local.set $p
    local.get $buf
    local.get $p
    local.get $buf
    i32.sub
    call $print_line)

  ;; Worker ID: reports on the sum of 1..(10 * ID) every 200 ms, forever.
  (func $worker (param $id i32)
    (local $k i32)
    loop $forever
      local.get $k
      i32.const 1
      i32.add
      local.set $k
      local.get $id
      local.get $k
      local.get $id
      i32.const 10
      i32.mul
      call $report
      i64.const 200000000
      call $sleep
      br $forever
    end)

  ;; Starts the workers, then runs for $seconds (0: forever).
  (func $serve (export "serve") (param $seconds i32)
    (local $t i32)
    i32.const 0
    i32.const 54
    call $print_line
    (drop (call $spawn (i32.const 0) (i32.const 1)))
    (drop (call $spawn (i32.const 0) (i32.const 2)))
    (drop (call $spawn (i32.const 0) (i32.const 3)))
    loop $tick
      i64.const 1000000000
      call $sleep
      local.get $t
      i32.const 1
      i32.add
      local.tee $t
      local.get $seconds
      i32.ne
      br_if $tick
    end)

  (func $start (export "_start")
    i32.const 0
    call $serve))

;; A counter with a bug: `increment` adds 2 instead of 1.
(module
  (type $unary (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $count (mut i32) (i32.const 0))
  (table 2 funcref)
  (elem (i32.const 0) $increment $get)
  (data $banner (i32.const 16) "counter v1")
  (func $increment (export "increment") (result i32)
    global.get $count
    i32.const 2
    i32.add
    global.set $count
    global.get $count)
  (func $get (export "get") (result i32)
    global.get $count)
  (func $add (export "add") (type $unary) (param $n i32) (result i32)
    global.get $count
    local.get $n
    i32.add
    global.set $count
    call $get)
  (func $reset (export "reset")
    i32.const 0
    global.set $count))

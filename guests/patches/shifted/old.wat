;; `add` overflows; the fix adds a helper *before* every other function,
;; which shifts every function index by one.
(module
  (memory 1)
  (table 3 funcref)
  (elem (i32.const 0) $add $mul $square)
  (func $add (export "add") (param i32 i32) (result i32)
    local.get 0
    local.get 1
    i32.add)
  (func $mul (export "mul") (param i32 i32) (result i32)
    local.get 0
    local.get 1
    i32.mul)
  (func $square (export "square") (param i32) (result i32)
    local.get 0
    local.get 0
    call $mul)
  (func $sum3 (export "sum3") (param i32 i32 i32) (result i32)
    local.get 0
    local.get 1
    call $add
    local.get 2
    call $add)
  (func $apply (export "apply") (param i32 i32 i32) (result i32)
    local.get 1
    local.get 2
    local.get 0
    call_indirect (param i32 i32) (result i32)))

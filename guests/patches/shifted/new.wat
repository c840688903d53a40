;; `clamp` is new and comes first, so every other function moves up by one
;; index; only `add` changes (it now calls `clamp`).
(module
  (memory 1)
  (table 3 funcref)
  (elem (i32.const 0) $add $mul $square)
  (func $clamp (param i64) (result i32)
    local.get 0
    i64.const 2147483647
    i64.gt_s
    if (result i32)
      i32.const 2147483647
    else
      local.get 0
      i32.wrap_i64
    end)
  (func $add (export "add") (param i32 i32) (result i32)
    local.get 0
    i64.extend_i32_s
    local.get 1
    i64.extend_i32_s
    i64.add
    call $clamp)
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

;; `scale` now takes the factor as a second parameter: its type changes,
;; and both of its callers change with it (so the patch is accepted).
(module
  (func $scale (param i32 i32) (result i32)
    local.get 0
    local.get 1
    i32.mul)
  (func $price (export "price") (param i32) (result i32)
    local.get 0
    i32.const 10
    call $scale)
  (func $double_price (export "double_price") (param i32) (result i32)
    local.get 0
    i32.const 10
    call $scale
    i32.const 2
    i32.mul)
  (func $id (export "id") (param i32) (result i32)
    local.get 0))

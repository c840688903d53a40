;; `scale` takes a factor of 10 for granted.
(module
  (func $scale (param i32) (result i32)
    local.get 0
    i32.const 10
    i32.mul)
  (func $price (export "price") (param i32) (result i32)
    local.get 0
    call $scale)
  (func $double_price (export "double_price") (param i32) (result i32)
    local.get 0
    call $scale
    i32.const 2
    i32.mul)
  (func $id (export "id") (param i32) (result i32)
    local.get 0))

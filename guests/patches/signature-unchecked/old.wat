;; `trap_path` calls `check` after `unreachable`, so its body is valid for
;; any type of `check`: it does not change when `check`'s type does.
(module
  (func $check (param i32) (result i32)
    local.get 0)
  (func $trap_path (export "trap_path") (result i32)
    unreachable
    call $check)
  (func $run (export "run") (result i32)
    i32.const 1
    call $check))

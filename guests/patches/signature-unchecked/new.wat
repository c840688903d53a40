;; `check` takes an i64 now; `run` changes, `trap_path` does not, so the
;; patch must be refused: `trap_path` is a caller left out of the bundle.
(module
  (func $check (param i64) (result i32)
    local.get 0
    i32.wrap_i64)
  (func $trap_path (export "trap_path") (result i32)
    unreachable
    call $check)
  (func $run (export "run") (result i32)
    i64.const 1
    call $check))

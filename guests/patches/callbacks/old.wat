(module
  (global $ready (mut i32) (i32.const 1))
  (func $work (export "work") (result i32)
    i32.const 1))

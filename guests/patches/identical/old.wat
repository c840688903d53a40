(module
  (func $f (export "f") (result i32)
    i32.const 42)
  (func $g (export "g") (result i32)
    call $f))

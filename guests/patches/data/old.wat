(module
  (memory (export "memory") 1)
  (data $greeting (i32.const 0) "hello")
  (func $len (export "len") (result i32)
    i32.const 5))

;; Same module, written differently: comments and folded form change
;; nothing in the binary, so there is nothing to patch.
(module
  (func $f (export "f") (result i32) (i32.const 42))
  (func $g (export "g") (result i32) (call $f)))

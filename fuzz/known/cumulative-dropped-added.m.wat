;; Patch-equivalence fuzzer, first found at seed 4000331 (reduced by hand).
;; Bundle 1 = diff M M': `$f` calls a new function `$h`, which calls `$g`.
;; Bundle 2 = diff --replace M M'': no `$h`, `$f` calls `$g` with one more
;; argument. The runtime refuses bundle 2 over bundle 1: "function g cannot
;; change its signature: its caller func[2] (its version from patch 1) is
;; not in the bundle" (the added `$h`, shown without its name).
(module
  (func $g (param i32) (result i32) local.get 0)
  (func $f (export "f") (result i32) i32.const 1))

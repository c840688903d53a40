;; Call-heavy micro kernel for `Config::inline` (benches/README.md,
;; "Inlining"): run(_) loops 10^7 times over acc = mix(acc, sq(i)), two
;; leaf helpers a rustc -O build would have inlined already.
(module
 (func $sq (param i64) (result i64) local.get 0 local.get 0 i64.mul)
 (func $mix (param i64 i64) (result i64) local.get 0 i64.const 31 i64.mul local.get 1 i64.xor)
 (func (export "run") (param i32) (result i64) (local $i i32) (local $acc i64)
   (loop $l
     local.get $acc local.get $i i64.extend_i32_u call $sq call $mix local.set $acc
     local.get $i i32.const 1 i32.add local.tee $i i32.const 10000000 i32.lt_u br_if $l)
   local.get $acc))

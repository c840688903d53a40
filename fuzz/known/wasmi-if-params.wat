;; A divergence of wasmi 2.0.0 (the differential fuzzer's reference),
;; reduced from the fixed-seed test's seed 0x5eed0089 by deleting lines.
;; Call "5" with (i32 0), then read global "10". Memory 0 has 0 pages, so
;; the `if` takes its `else` arm; the stores after it leave global 2 = 0
;; (local 0), and the final xor with memory.size (0) keeps it 0.
;; wasm-patch: 0. wasmi 2.0.0: a different value on every run (568918528,
;; 1326776832, -1410661888, ...: low 16 bits zero), as if it read a stale
;; or uninitialised register slot.
;; Replay: DIFF_FUZZ_FILE=fuzz/known/wasmi-if-params.wat \
;;   cargo test --test all random_modules_agree
(module
  (type (;0;) (func))
  (type (;1;) (func (param i32) (result i32)))
  (type (;2;) (func (param i64 i64) (result i64)))
  (type (;3;) (func (param f32) (result f32)))
  (type (;4;) (func (param f64 f64) (result f64)))
  (type (;5;) (func (param i32 i64 f32 f64) (result f64 f32 i64 i32)))
  (type (;6;) (func (param i32) (result i64 f64 f32 f32 f64 f32 f32 f64 f32 f32 i64)))
  (type (;7;) (func (param i64) (result i32 i64 i32 i64 i32 i64 i32 i64 i32 i64)))
  (type (;8;) (func (param funcref externref) (result externref funcref)))
  (import "host" "nop" (func (;0;) (type 0)))
  (import "host" "many" (func (;1;) (type 6) (param i32) (result i64 f64 f32 f32 f64 f32 f32 f64 f32 f32 i64)))
  (import "host" "ints" (func (;2;) (type 7) (param i64) (result i32 i64 i32 i64 i32 i64 i32 i64 i32 i64)))
  (import "host" "refs" (func (;3;) (type 8) (param funcref externref) (result externref funcref)))
  (memory (;0;) 0 14)
  (global (;0;) (mut i32) i32.const 0)
  (global (;1;) (mut i64) i64.const 0)
  (global (;2;) (mut i32) i32.const 0)
  (global (;3;) (mut i64) i64.const 0)
  (global (;4;) (mut i32) i32.const 10000)
  (export "5" (func 5))
  (export "10" (global 2))
  (func (;4;) (type 7) unreachable)
  (func (;5;) (type 1) (param i32) (result i32)
    ref.null extern
    memory.size
    loop
      block
        loop (type 0)
          global.get 4
          global.set 4
          i64.const 917504
          local.get 0
          ref.null func
          i32.const 2010706687
          i64.extend_i32_s
          f32.const -0x1.4e7f2ap+7
          i64.trunc_sat_f32_s
          memory.size
          if (type 7) (param i64) (result i32 i64 i32 i64 i32 i64 i32 i64 i32 i64)
            ref.null func
            block
              br 0 (;@5;)
              loop (type 4) (param f64 f64) (result f64)
                f64.const 0x1.152b8c657694dp-603
                i64.trunc_sat_f64_s
                block (result externref)
                  i64.const -2114007734791232556
                  global.set 3
                  ref.null extern
                end
                drop
                global.set 1
                i64.reinterpret_f64
                global.set 3
              end
              i64.reinterpret_f64
              global.set 3
            end
            drop
            global.set 1
            i32.const -76399014
            i64.const -8800010244666092601
            i32.const 1476718785
            i64.const -6172305555351797580
            i32.const -1073741824
            i64.const -2274467103722712888
            i32.const 917508
            i64.const -65537
            i32.const -918955123
            i64.const -268435456
          else
            global.set 1
            i32.const -4194305
            i64.const 16777215
            i32.const 1776571723
            i64.const 2147483647
            i32.const 758612116
            i64.const -9
            i32.const 917504
            i64.const -3324949751829745761
            i32.const 1109807155
            i64.const -6358646169998163864
          end
          global.set 1
          global.set 2
          global.set 1
          global.set 2
          global.set 1
          global.set 2
          global.set 1
          global.set 2
          global.set 1
          global.set 2
          global.set 1
          drop
          global.set 2
          global.set 1
        end
      end
    end
    global.get 2
    i32.xor
    global.set 2
    drop
    i32.const -1749440511
  )
  )

;; wasmi 2.0.0 divergence, reduced from seed 2020335 by deleting lines.
;; Call "5" with (f32 0), then read global "15". The `if` below takes its
;; `else` arm (memory.size = 1, so the condition is -134217729 > 0).
;; wasm-patch: -1450136871 on every run, and the same when the `if` is
;; replaced by its `else` arm. wasmi 2.0.0: -1450136675, -1450136878, ...
;; (changes between runs) with the `if`, -1450136871 without it.
(module
  (type (;0;) (func))
  (type (;1;) (func (param i32) (result i32)))
  (type (;2;) (func (param i64 i64) (result i64)))
  (type (;3;) (func (param f32) (result f32)))
  (type (;4;) (func (param f64 f64) (result f64)))
  (type (;5;) (func (param i32 i64 f32 f64) (result f64 f32 i64 i32)))
  (type (;6;) (func (param i32) (result i64 f64 f32 f32 f64 f32 f32 f64 f32 f32 i64)))
  (type (;7;) (func (param i64) (result i32 i64 i32 i64 i32 i64 i32 i64 i32 i64)))
  (import "host" "i64" (func (;0;) (type 2) (param i64 i64) (result i64)))
  (import "host" "f32" (func (;1;) (type 3) (param f32) (result f32)))
  (import "host" "f64" (func (;2;) (type 4) (param f64 f64) (result f64)))
  (import "host" "many" (func (;3;) (type 6) (param i32) (result i64 f64 f32 f32 f64 f32 f32 f64 f32 f32 i64)))
  (import "host" "ints" (func (;4;) (type 7) (param i64) (result i32 i64 i32 i64 i32 i64 i32 i64 i32 i64)))
  (table (;0;) 0 147 externref)
  (memory (;0;) 1 6)
  (global (;0;) (mut i32) i32.const 1504563948)
  (global (;1;) (mut f32) f32.const 0x1.eaf786p+109)
  (global (;2;) f64 f64.const -0x1.c0245d90dc756p+390)
  (global (;3;) (mut f64) f64.const -0x1.337bf1598e969p+598)
  (global (;4;) (mut i32) i32.const 0)
  (global (;5;) (mut i64) i64.const 0)
  (global (;6;) (mut i64) i64.const 0)
  (global (;7;) (mut i32) i32.const 0)
  (global (;8;) (mut i32) i32.const 10000)
  (export "5" (func 5))
  (export "15" (global 7))
  (func (;5;) (type 3) (param f32) (result f32)
    (local externref f64 f32 f64 f64)
    global.get 8
    if 
    end
    global.get 8
    i32.const 1
    i32.sub
    global.set 8
    ref.null extern
    local.get 0
    f64.const 0x1.6103e5f7c421bp+136
    f64.const nan
    local.get 2
    local.get 2
    f64.eq
    select
    f32.const 0x1.ffffcp-131
    f32.const nan
    local.get 3
    local.get 3
    f32.eq
    select
    local.get 0
    i32.const 2139095040
    call 3
    i64.const -134217729
    memory.size
    f32.reinterpret_i32
    i64.trunc_f32_s
    i64.gt_s
    if (type 7) (param i64) (result i32 i64 i32 i64 i32 i64 i32 i64 i32 i64) 
      i32.const 65537
      i64.const -2549783356398483047
      ref.null func
      ref.is_null
      f32.reinterpret_i32
      loop (type 0) 
        block (type 0) 
          memory.size
          f64.load offset=42321 align=2
          local.get 0
          local.set 0
          i64.reinterpret_f64
          table.size 0
          i64.load8_s offset=98452
          i64.gt_s
          i64.load32_u offset=53321 align=1
          ref.null func
          i64.const 134217727
          i32.const 1165783794
          f32.const 0x1.p-130
          i32.trunc_f32_u
          i32.le_s
          loop (type 6) (param i32) (result i64 f64 f32 f32 f64 f32 f32 f64 f32 f32 i64) 
            global.get 8
            if 
            end
            global.get 8
            i32.const 1
            i32.sub
            global.set 8
            block (type 6) (param i32) (result i64 f64 f32 f32 f64 f32 f32 f64 f32 f32 i64) 
              br 3 (;@2;)
            end
          end
          global.get 6
          i64.xor
          global.set 6
          i32.reinterpret_f32
          global.get 7
          i32.xor
          global.set 7
          i32.reinterpret_f32
          global.get 7
          i32.xor
          global.set 7
          i64.reinterpret_f64
          global.get 5
          i64.xor
          global.set 5
          i32.reinterpret_f32
          global.get 7
          i32.xor
          global.set 7
          i32.reinterpret_f32
          global.get 7
          i32.xor
          global.set 7
          i64.reinterpret_f64
          global.get 5
          i64.xor
          global.set 5
          i32.reinterpret_f32
          global.get 7
          i32.xor
          global.set 7
          i32.reinterpret_f32
          global.get 7
          i32.xor
          global.set 7
          i64.reinterpret_f64
          global.get 5
          i64.xor
          global.set 5
          global.get 6
          i64.xor
          global.set 6
          global.get 6
          i64.xor
          global.set 6
          drop
          global.get 6
          i64.xor
          global.set 6
        end
      end
      i32.reinterpret_f32
      global.get 7
      i32.xor
      global.set 7
      global.get 6
      i64.xor
      global.set 6
      global.get 4
      i32.xor
      global.set 4
      global.get 6
      i64.xor
      global.set 6
      i32.const -27745626
      i64.const -8589934593
      i32.const 1943809777
      i64.const 7002230618031304814
      i32.const -1504455259
      i64.const -5885829840922362847
      i32.const -1917476075
      i64.const -6491587414495505150
      i32.const -67108864
      i64.const -1099511627776
    else
      global.get 6
      i64.xor
      global.set 6
      i32.const -16777217
      i64.const 4095
      i32.const 316680957
      i64.const 7856509303054558069
      i32.const 255
      i64.const -1125899906842625
      i32.const 213709322
      i64.const -562949953421312
      i32.const 31
      i64.const 393224
    end
    global.get 6
    i64.xor
    global.set 6
    global.get 4
    i32.xor
    global.set 4
    global.get 6
    i64.xor
    global.set 6
    global.get 4
    i32.xor
    global.set 4
    global.get 6
    i64.xor
    global.set 6
    global.get 4
    i32.xor
    global.set 4
    global.get 6
    i64.xor
    global.set 6
    global.get 4
    i32.xor
    global.set 4
    global.get 6
    i64.xor
    global.set 6
    global.get 4
    i32.xor
    global.set 4
    i32.reinterpret_f32
    global.get 7
    i32.xor
    global.set 7
    i32.reinterpret_f32
    global.get 7
    i32.xor
    global.set 7
    i64.reinterpret_f64
    global.get 5
    i64.xor
    global.set 5
    i32.reinterpret_f32
    global.get 7
    i32.xor
    global.set 7
    i32.reinterpret_f32
    global.get 7
    i32.xor
    global.set 7
    i64.reinterpret_f64
    global.get 5
    i64.xor
    global.set 5
    i32.reinterpret_f32
    global.get 7
    i32.xor
    global.set 7
    i32.reinterpret_f32
    global.get 7
    i32.xor
    global.set 7
    i64.reinterpret_f64
    global.get 5
    i64.xor
    global.set 5
    global.get 6
    i64.xor
    global.set 6
    i32.reinterpret_f32
    global.get 7
    i32.xor
    global.set 7
    i32.reinterpret_f32
    global.get 7
    i32.xor
    global.set 7
    i64.reinterpret_f64
    global.get 5
    i64.xor
    global.set 5
    i32.reinterpret_f32
    global.get 7
    i32.xor
    global.set 7
    drop
    f32.const -0x1.f6b8ap+50
  )
)


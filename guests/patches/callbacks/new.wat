;; `work` changes; `pre_patch` and `post_patch` are new and only used as
;; callbacks (`--pre-patch pre_patch --post-patch post_patch`);
;; `post_patch` calls `log_ok`, a new helper, which becomes an addition.
(module
  (global $ready (mut i32) (i32.const 1))
  (func $work (export "work") (result i32)
    i32.const 2)
  (func $pre_patch (result i32)
    ;; veto (nonzero) unless the guest is ready
    global.get $ready
    i32.eqz)
  (func $log_ok (result i32)
    i32.const 0)
  (func $post_patch (result i32)
    call $log_ok))

//! Escape tests: a guest whose only preopen is `sandbox/` tries to reach
//! `outside.txt` beside it through `..`, absolute paths, symlinks (relative,
//! absolute, to directories, chained), renames, hard links and symlinks it
//! creates itself. Each attempt must fail with `EPERM`/`ENOTCAPABLE` (or be
//! unable to name the file at all) and leave the host files untouched. The
//! same operations inside the sandbox succeed, so a refusal is not an
//! accident of a broken call.

use std::path::{Path, PathBuf};
use wasm_patch_runtime::{Engine, Linker, Module, Store};
use wasm_patch_wasi::{add_wasi, WasiCtx};

const PERM: i32 = 63;
const NOTCAPABLE: i32 = 76;
const SECRET: &str = "secret outside the sandbox";

/// A fresh `base/` with `outside.txt`, `outside_dir/` and `sandbox/`
/// holding `inside.txt`, `sub/` and escaping symlinks.
struct Fixture {
    base: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let base =
            std::env::temp_dir().join(format!("wasm-patch-escape-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let sb = base.join("sandbox");
        std::fs::create_dir_all(sb.join("sub")).unwrap();
        std::fs::create_dir_all(base.join("outside_dir")).unwrap();
        std::fs::write(base.join("outside.txt"), SECRET).unwrap();
        std::fs::write(sb.join("inside.txt"), "inside").unwrap();
        use std::os::unix::fs::symlink as link;
        link("../outside.txt", sb.join("link_rel")).unwrap();
        link(base.join("outside.txt"), sb.join("link_abs")).unwrap();
        link("..", sb.join("link_up")).unwrap();
        link("../outside_dir", sb.join("link_dir")).unwrap();
        link("link_rel", sb.join("link_chain")).unwrap();
        link("sub/../inside.txt", sb.join("link_ok")).unwrap();
        Fixture { base }
    }

    fn sandbox(&self) -> PathBuf {
        self.base.join("sandbox")
    }

    /// The host files outside the sandbox are as they were.
    fn assert_outside_intact(&self) {
        assert_eq!(
            std::fs::read_to_string(self.base.join("outside.txt")).unwrap(),
            SECRET
        );
        let names: Vec<_> = std::fs::read_dir(&self.base)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(names, ["outside.txt", "outside_dir", "sandbox"]);
        assert_eq!(
            std::fs::read_dir(self.base.join("outside_dir"))
                .unwrap()
                .count(),
            0
        );
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// One WASI call as a wasm instruction sequence; `$a`/`$b` are the two
/// path strings at offsets 1000 and 2000, fd 3 is the sandbox.
fn call_body(op: &str, a: &str, b: &str) -> String {
    let (la, lb) = (a.len(), b.len());
    let pa = format!("(i32.const 1000) (i32.const {la})");
    let pb = format!("(i32.const 2000) (i32.const {lb})");
    // Rights: read, write, seek... everything a file may hold.
    let all = "(i64.const 0x3fffffff) (i64.const 0x3fffffff)";
    match op {
        "open_read" => format!(
            "(call $path_open (i32.const 3) (i32.const 0) {pa} (i32.const 0) {all} (i32.const 0) (i32.const 100))"
        ),
        "open_read_follow" => format!(
            "(call $path_open (i32.const 3) (i32.const 1) {pa} (i32.const 0) {all} (i32.const 0) (i32.const 100))"
        ),
        "open_create_follow" => format!(
            "(call $path_open (i32.const 3) (i32.const 1) {pa} (i32.const 1) {all} (i32.const 0) (i32.const 100))"
        ),
        "open_trunc_follow" => format!(
            "(call $path_open (i32.const 3) (i32.const 1) {pa} (i32.const 8) {all} (i32.const 0) (i32.const 100))"
        ),
        "open_dir_follow" => format!(
            "(call $path_open (i32.const 3) (i32.const 1) {pa} (i32.const 2) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 100))"
        ),
        "stat_follow" => format!("(call $path_filestat_get (i32.const 3) (i32.const 1) {pa} (i32.const 100))"),
        "stat" => format!("(call $path_filestat_get (i32.const 3) (i32.const 0) {pa} (i32.const 100))"),
        "mkdir" => format!("(call $path_create_directory (i32.const 3) {pa})"),
        "rmdir" => format!("(call $path_remove_directory (i32.const 3) {pa})"),
        "unlink" => format!("(call $path_unlink_file (i32.const 3) {pa})"),
        "rename" => format!("(call $path_rename (i32.const 3) {pa} (i32.const 3) {pb})"),
        "link" => format!("(call $path_link (i32.const 3) (i32.const 0) {pa} (i32.const 3) {pb})"),
        "symlink" => format!("(call $path_symlink {pa} (i32.const 3) {pb})"),
        "set_times_follow" => format!(
            "(call $path_filestat_set_times (i32.const 3) (i32.const 1) {pa} (i64.const 0) (i64.const 0) (i32.const 10))"
        ),
        other => panic!("unknown op {other}"),
    }
}

const IMPORTS: &str = r#"
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_get" (func $path_filestat_get (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory" (func $path_create_directory (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_remove_directory" (func $path_remove_directory (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_unlink_file" (func $path_unlink_file (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_rename" (func $path_rename (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_link" (func $path_link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_symlink" (func $path_symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_set_times" (func $path_filestat_set_times (param i32 i32 i32 i32 i64 i64 i32) (result i32)))
"#;

fn wat_string(s: &str) -> String {
    s.bytes().map(|b| format!("\\{b:02x}")).collect()
}

/// Run `op` on paths `a` and `b` in a guest whose only preopen is
/// `sandbox` (fd 3, named `/`); returns the errno.
fn attempt(sandbox: &Path, op: &str, a: &str, b: &str) -> i32 {
    let wat = format!(
        r#"(module {IMPORTS}
  (memory (export "memory") 1)
  (data (i32.const 1000) "{}")
  (data (i32.const 2000) "{}")
  (func (export "go") (result i32) {}))"#,
        wat_string(a),
        wat_string(b),
        call_body(op, a, b)
    );
    let engine = Engine::default();
    let module = Module::new(&engine, &wat).expect("test module");
    let mut store = Store::new(&engine, ());
    let mut linker = Linker::new(&engine);
    let mut ctx = WasiCtx::new();
    ctx.preopen_dir(sandbox, "/").unwrap();
    add_wasi(&mut linker, ctx).unwrap();
    let inst = linker.instantiate(&mut store, &module).unwrap();
    let go = inst
        .get_func(&store, "go")
        .unwrap()
        .typed::<(), i32>(&store)
        .unwrap();
    go.call(&mut store, ()).unwrap()
}

fn assert_refused(f: &Fixture, op: &str, a: &str, b: &str) {
    let e = attempt(&f.sandbox(), op, a, b);
    assert!(
        e == PERM || e == NOTCAPABLE,
        "{op}({a:?}, {b:?}) must be refused with EPERM or ENOTCAPABLE, got errno {e}"
    );
    f.assert_outside_intact();
}

#[test]
fn dotdot_paths_are_refused() {
    let f = Fixture::new("dotdot");
    for p in [
        "../outside.txt",
        "sub/../../outside.txt",
        "./../outside.txt",
        "sub/../sub/../../outside.txt",
    ] {
        assert_refused(&f, "open_read", p, "");
        assert_refused(&f, "open_read_follow", p, "");
        assert_refused(&f, "stat_follow", p, "");
        assert_refused(&f, "unlink", p, "");
        assert_refused(&f, "set_times_follow", p, "");
    }
    assert_refused(&f, "open_create_follow", "../created.txt", "");
    assert_refused(&f, "open_trunc_follow", "../outside.txt", "");
    assert_refused(&f, "open_dir_follow", "..", "");
    assert_refused(&f, "mkdir", "../made", "");
    assert_refused(&f, "mkdir", "../outside_dir/made", "");
    assert_refused(&f, "rmdir", "../outside_dir", "");
    // The same shapes inside the sandbox work.
    assert_eq!(
        attempt(&f.sandbox(), "open_read", "sub/../inside.txt", ""),
        0
    );
    assert_eq!(attempt(&f.sandbox(), "mkdir", "sub/../made", ""), 0);
    assert_eq!(attempt(&f.sandbox(), "rmdir", "made", ""), 0);
}

#[test]
fn absolute_paths_are_refused() {
    let f = Fixture::new("absolute");
    let host_abs = f.base.join("outside.txt").display().to_string();
    for p in ["/outside.txt", "/inside.txt", "/", host_abs.as_str()] {
        assert_refused(&f, "open_read_follow", p, "");
        assert_refused(&f, "stat_follow", p, "");
    }
    assert_refused(&f, "open_create_follow", "/created.txt", "");
    assert_refused(&f, "mkdir", "/made", "");
    assert_refused(&f, "unlink", &host_abs, "");
}

#[test]
fn symlinks_out_of_the_preopen_are_refused() {
    let f = Fixture::new("symlinks");
    for p in ["link_rel", "link_abs", "link_chain", "link_up/outside.txt"] {
        assert_refused(&f, "open_read_follow", p, "");
        assert_refused(&f, "stat_follow", p, "");
        assert_refused(&f, "set_times_follow", p, "");
        assert_refused(&f, "open_trunc_follow", p, "");
    }
    assert_refused(&f, "open_dir_follow", "link_up", "");
    assert_refused(&f, "open_dir_follow", "link_dir", "");
    assert_refused(&f, "open_create_follow", "link_dir/created.txt", "");
    assert_refused(&f, "mkdir", "link_dir/made", "");
    assert_refused(&f, "mkdir", "link_up/made", "");
    assert_refused(&f, "unlink", "link_up/outside.txt", "");
    // Not following: the symlink itself, inside the sandbox, is fine.
    assert_eq!(attempt(&f.sandbox(), "stat", "link_rel", ""), 0);
    // A symlink that stays inside is followed.
    assert_eq!(attempt(&f.sandbox(), "open_read_follow", "link_ok", ""), 0);
}

#[test]
fn renames_and_links_out_of_the_preopen_are_refused() {
    let f = Fixture::new("rename");
    assert_refused(&f, "rename", "inside.txt", "../moved.txt");
    assert_refused(&f, "rename", "inside.txt", "link_dir/moved.txt");
    assert_refused(&f, "rename", "inside.txt", "/moved.txt");
    assert_refused(&f, "rename", "../outside.txt", "stolen.txt");
    assert_refused(&f, "rename", "link_up/outside.txt", "stolen.txt");
    assert_refused(&f, "link", "inside.txt", "../linked.txt");
    assert_refused(&f, "link", "../outside.txt", "stolen.txt");
    assert_refused(&f, "link", "link_up/outside.txt", "stolen.txt");
    assert_refused(&f, "link", "inside.txt", "link_dir/linked.txt");
    assert!(f.sandbox().join("inside.txt").exists());
    assert!(!f.sandbox().join("stolen.txt").exists());
    // Inside the sandbox both work.
    assert_eq!(attempt(&f.sandbox(), "link", "inside.txt", "sub/l.txt"), 0);
    assert_eq!(
        attempt(&f.sandbox(), "rename", "sub/l.txt", "sub/../r.txt"),
        0
    );
    assert!(f.sandbox().join("r.txt").exists());
}

#[test]
fn symlinks_the_guest_creates_cannot_be_followed_out() {
    let f = Fixture::new("guest-symlink");
    // An absolute target is refused outright.
    assert_refused(&f, "symlink", "/etc/passwd", "abs");
    assert!(!f.sandbox().join("abs").exists());
    // A relative one may be created, but never followed out.
    assert_eq!(attempt(&f.sandbox(), "symlink", "../outside.txt", "esc"), 0);
    assert_eq!(
        attempt(&f.sandbox(), "symlink", "../outside_dir", "escd"),
        0
    );
    assert_refused(&f, "open_read_follow", "esc", "");
    assert_refused(&f, "open_trunc_follow", "esc", "");
    assert_refused(&f, "open_create_follow", "escd/new.txt", "");
    assert_refused(&f, "mkdir", "escd/new", "");
    // The link itself cannot be created outside either.
    assert_refused(&f, "symlink", "inside.txt", "../planted");
}

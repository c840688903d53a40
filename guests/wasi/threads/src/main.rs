//! Several guest threads (through the `wasm-patch` thread ABI) in a
//! `wasm32-wasip1` program: a reader blocked in `stdin().read_line` while
//! two workers and the main thread keep printing.
//!
//! Output: `main tick N`, `worker ID tick N` lines (every 2 ms per thread)
//! until a line arrives on stdin; then the reader prints `reader got: LINE`
//! and exits the whole program with status 3 (`std::process::exit`, i.e.
//! `proc_exit(3)` from a spawned thread).
//!
//! Arguments choose what blocks:
//! - none: the reader reads stdin;
//! - `read PATH`: the reader opens `PATH` (a FIFO in a preopened
//!   directory) and reads a line from it;
//! - `flood N`: no reader; the ticks go to stderr, and a flooder thread
//!   writes `flood 0` .. `flood N-1` to stdout (which the test leaves
//!   unread for a while, so the pipe fills and the flooder blocks), then
//!   prints `flood done` to stderr and exits with status 5.
//!
//! Every tick, each worker and the main thread hold a frame in their
//! linear-memory stack across the sleep (`hold`) and check it afterwards:
//! the runtime gives each guest thread its own stack and switches
//! `__stack_pointer` with it. On one shared stack, a thread returning from
//! `hold` would pop past the frames other threads pushed meanwhile and its
//! next call would overwrite them; a corrupted frame prints
//! `THREAD: frame corrupted` and exits with status 4.

use std::io::{BufRead, Write};

#[link(wasm_import_module = "wasm-patch")]
extern "C" {
    /// Starts `entry` (an index into table 0, of type `(param i32)`) with `arg`.
    fn spawn(entry: i32, arg: i32) -> i32;
    /// Parks the calling guest thread for `nanos` nanoseconds.
    fn sleep(nanos: i64);
}

const TICK_NANOS: i64 = 2_000_000;

/// Whether ticks go to stderr (`flood` mode).
static TICKS_ON_STDERR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn tick(who: &str, n: u32) {
    // A closed pipe ends the program: nothing left to show.
    let r = if TICKS_ON_STDERR.load(std::sync::atomic::Ordering::Relaxed) {
        writeln!(std::io::stderr().lock(), "{who} tick {n}")
    } else {
        writeln!(std::io::stdout().lock(), "{who} tick {n}")
    };
    if r.is_err() {
        std::process::exit(1);
    }
}

/// Sleeps one tick with `depth + 1` frames of 64 bytes of `seal` in this
/// thread's linear-memory stack (their addresses escape, so they live
/// there), then checks that no other thread wrote into them meanwhile.
/// Threads hold different depths at different ticks, as real threads do.
#[inline(never)]
fn hold(who: &str, seal: u32, depth: u32) {
    let mut frame = [seal; 16];
    let frame = std::hint::black_box(&mut frame);
    if depth == 0 {
        // SAFETY: the thread ABI's `sleep` takes any duration and only
        // parks this guest thread.
        unsafe { sleep(TICK_NANOS) };
    } else {
        hold(who, seal, depth - 1);
    }
    if std::hint::black_box(&*frame).iter().any(|&w| w != seal) {
        println!("{who}: frame corrupted");
        std::process::exit(4);
    }
}

extern "C" fn worker(id: i32) {
    let who = format!("worker {id}");
    for n in 0.. {
        tick(&who, n);
        hold(&who, (id as u32) << 24 | n, (id as u32 + n) % 4);
    }
}

extern "C" fn reader(_: i32) {
    let mut line = String::new();
    let got = match std::env::args().nth(2) {
        Some(path) => std::fs::File::open(&path)
            .and_then(|f| std::io::BufReader::new(f).read_line(&mut line)),
        None => std::io::stdin().read_line(&mut line),
    };
    match got {
        Ok(_) => println!("reader got: {}", line.trim_end()),
        Err(e) => println!("reader failed: {e}"),
    }
    std::process::exit(3);
}

extern "C" fn flooder(lines: i32) {
    let out = std::io::stdout();
    let mut out = out.lock();
    for i in 0..lines {
        if writeln!(out, "flood {i}").is_err() {
            std::process::exit(1);
        }
    }
    drop(out);
    eprintln!("flood done");
    std::process::exit(5);
}

fn start(entry: extern "C" fn(i32), arg: i32) {
    // A function pointer on wasm32 is its index in the indirect function
    // table (table 0).
    let index = entry as usize as i32;
    // SAFETY: `index` names a function of type `(param i32)` in table 0,
    // as the thread ABI requires.
    let id = unsafe { spawn(index, arg) };
    assert!(id >= 0, "spawn failed: {id}");
}

fn main() {
    let mode = std::env::args().nth(1);
    if mode.as_deref() == Some("flood") {
        TICKS_ON_STDERR.store(true, std::sync::atomic::Ordering::Relaxed);
        let n = std::env::args()
            .nth(2)
            .and_then(|n| n.parse().ok())
            .unwrap_or(100_000);
        start(flooder, n);
    } else {
        start(reader, 0);
    }
    start(worker, 1);
    start(worker, 2);
    for n in 0.. {
        tick("main", n);
        hold("main", n, n % 3);
    }
}

//! `bank`: accounts moved between by worker threads. Money is conserved:
//! the balances always add up to ACCOUNTS * OPENING.
//!
//! Revision 7 (after 6): three exports the later fixes fill in:
//! `refusal_reason`, `refusals` and `fee`. Revisions 7, 8 and 9 each fix
//! one of them, with new data: a string, a static, a function pointer.
//!
//! (Kept at the same number of lines in 7, 8 and 9.)
//!
#![no_std]

use core::sync::atomic::{AtomicI64, AtomicU32, Ordering::Relaxed};

const ACCOUNTS: usize = 8;
const OPENING: i64 = 1000;

static BALANCES: [AtomicI64; ACCOUNTS] = [const { AtomicI64::new(OPENING) }; ACCOUNTS];
static STOP: AtomicU32 = AtomicU32::new(0);
static RUNNING: AtomicU32 = AtomicU32::new(0);
static MOVES: AtomicI64 = AtomicI64::new(0);
static PANIC_LINE: AtomicU32 = AtomicU32::new(0);
/// The reason of the last refusal (a `&'static str`, as pointer and length).
static mut LAST_REFUSAL: (*const u8, usize) = (core::ptr::null(), 0);

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    PANIC_LINE.store(info.location().map_or(0, |l| l.line()), Relaxed);
    core::arch::wasm32::unreachable()
}

/// Moves `amount` from `from` to `to`; 1 if it moved, 0 if refused.
#[inline(always)]
fn move_money(from: usize, to: usize, amount: i64) -> i32 {
    let a = &BALANCES[from];
    let b = &BALANCES[to];
    if amount < 0 || a.load(Relaxed) < amount {
        let why: &'static str = if amount < 0 { "negative amount" } else { "insufficient funds" };
        // SAFETY: guest threads are fibers on one OS thread; a plain store.
        unsafe { core::ptr::addr_of_mut!(LAST_REFUSAL).write_volatile((why.as_ptr(), why.len())) };
        return 0;
    }
    a.store(a.load(Relaxed) - amount, Relaxed);
    b.store(b.load(Relaxed) + amount, Relaxed);
    MOVES.fetch_add(1, Relaxed);
    1
}

/// One worker step: a pseudo-random transfer.
#[inline(never)]
fn step(seed: u32) -> u32 {
    let seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
    let from = (seed >> 8) as usize % ACCOUNTS;
    let to = (seed >> 12) as usize % ACCOUNTS;
    let amount = ((seed >> 16) % 400) as i64;
    move_money(from, to, amount);
    seed
}

extern "C" fn worker(id: i32) {
    let mut seed = id as u32 * 7919 + 1;
    while STOP.load(Relaxed) == 0 {
        seed = step(seed);
        wp_guest::yield_now();
    }
    RUNNING.fetch_sub(1, Relaxed);
}

/// Starts `n` workers.
#[no_mangle]
pub extern "C" fn start(n: i32) {
    for i in 0..n {
        if wp_guest::spawn(worker, i).is_some() {
            RUNNING.fetch_add(1, Relaxed);
        }
    }
}

/// Whether the last overdraft attempt went through (read and written
/// volatile, so that `serve` cannot know it from the code of
/// `try_overdraft`, and stays the same code in every revision).
static mut LAST_TRY: i32 = 0;

/// Tries an overdraft of account 0 and undoes it; records in `LAST_TRY`
/// whether it went through.
#[inline(never)]
fn try_overdraft() {
    let big = 1_000_000_000;
    let went = move_money(0, 1, big);
    if went == 1 {
        move_money(1, 0, big);
    }
    // SAFETY: guest threads are fibers on one OS thread; a plain store.
    unsafe { core::ptr::addr_of_mut!(LAST_TRY).write_volatile(went) }
}

/// Runs `workers` workers until an overdraft is refused (until the fix is
/// in), stops them and returns the total.
#[no_mangle]
pub extern "C" fn serve(workers: i32) -> i64 {
    start(workers);
    loop {
        try_overdraft();
        // SAFETY: as in `try_overdraft`: a plain load.
        if unsafe { core::ptr::addr_of!(LAST_TRY).read_volatile() } != 1 {
            break;
        }
        wp_guest::yield_now();
    }
    STOP.store(1, Relaxed);
    while RUNNING.load(Relaxed) != 0 {
        wp_guest::yield_now();
    }
    total()
}

/// Asks the workers to stop; returns how many still run.
#[no_mangle]
pub extern "C" fn stop() -> i32 {
    STOP.store(1, Relaxed);
    RUNNING.load(Relaxed) as i32
}

/// A transfer asked from outside (panics on a bad account).
#[no_mangle]
pub extern "C" fn transfer(from: i32, to: i32, amount: i64) -> i32 {
    move_money(from as usize, to as usize, amount)
}

/// The balance of account `i` (panics on a bad account).
#[no_mangle]
pub extern "C" fn balance(i: i32) -> i64 {
    BALANCES[i as usize].load(Relaxed)
}

/// The sum of all balances.
#[no_mangle]
pub extern "C" fn total() -> i64 {
    BALANCES.iter().map(|b| b.load(Relaxed)).sum()
}

/// Transfers made so far.
#[no_mangle]
pub extern "C" fn moves() -> i64 {
    MOVES.load(Relaxed)
}

/// The line of the last panic, 0 if none.
#[no_mangle]
pub extern "C" fn panic_line() -> i32 {
    PANIC_LINE.load(Relaxed) as i32
}

/// The reason of the last refusal, byte `i`; -1 past its end, or when no
/// reason is kept (revision 6 keeps none).
#[no_mangle]
pub extern "C" fn refusal_reason(i: i32) -> i32 {
    // SAFETY: as in `move_money`: a plain load.
    let (p, n) = unsafe { core::ptr::addr_of!(LAST_REFUSAL).read_volatile() };
    if p.is_null() || i < 0 || i as usize >= n {
        return -1;
    }
    // SAFETY: `(p, n)` is a `&'static str` and `i < n`.
    i32::from(unsafe { *p.add(i as usize) })
}

/// Refusals counted so far; -1 when they are not counted (revision 6).
#[no_mangle]
pub extern "C" fn refusals() -> i64 {
    -1
}

/// The fee on a transfer of `amount` (revision 6 charges none).
#[no_mangle]
pub extern "C" fn fee(amount: i64) -> i64 {
    let _ = amount;
    0
}

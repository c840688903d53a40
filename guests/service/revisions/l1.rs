//! `bank`, loop variant (issue 14): every worker lives in one loop for the
//! life of the service, and the fee schedule is inlined into that loop, so
//! a fix of `fee` changes the worker itself. Money is conserved: a fee
//! moves from the payer to the house account.
//!
//! Loop revision 1: the fee is 1% plus 1 up to 200, 2.5% above.
#![no_std]

use core::sync::atomic::{AtomicI64, AtomicU32, Ordering::Relaxed};

const ACCOUNTS: usize = 8;
const OPENING: i64 = 1000;
/// The house account, which collects fees.
const HOUSE: usize = 7;
/// Which revision of the code this is: stamped on every step.
const VERSION: u32 = 2;
const MAX_WORKERS: usize = 64;

static BALANCES: [AtomicI64; ACCOUNTS] = [const { AtomicI64::new(OPENING) }; ACCOUNTS];
static STOP: AtomicU32 = AtomicU32::new(0);
static RUNNING: AtomicU32 = AtomicU32::new(0);
/// Steps completed by code of revision 1 and 2 (by `VERSION`); steps
/// that began in one revision and ended in the other; steps whose worker
/// lost count.
static STEPS: [AtomicI64; 3] = [const { AtomicI64::new(0) }; 3];
static MIXED: AtomicI64 = AtomicI64::new(0);
static BROKEN: AtomicI64 = AtomicI64::new(0);
/// Per worker: the revision that began its current step, and the steps it
/// completed.
static TAGS: [AtomicU32; MAX_WORKERS] = [const { AtomicU32::new(0) }; MAX_WORKERS];
static DONE: [AtomicU32; MAX_WORKERS] = [const { AtomicU32::new(0) }; MAX_WORKERS];

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// The fee on a transfer of `amount` (inlined into the worker loop).
#[inline(always)]
fn fee(amount: i64) -> i64 {
    if amount > 200 { amount / 40 } else { amount / 100 + 1 }
}

/// Ends a step begun by revision `VERSION`'s worker: counts it, as mixed
/// if it began in the other revision, and checks the worker's own count.
#[inline(never)]
fn bill(id: usize, turn: u32) {
    let tag = TAGS[id].load(Relaxed);
    if tag != VERSION {
        MIXED.fetch_add(1, Relaxed);
    } else {
        STEPS[VERSION as usize].fetch_add(1, Relaxed);
    }
    if DONE[id].load(Relaxed) != turn {
        BROKEN.fetch_add(1, Relaxed);
    }
    DONE[id].store(turn.wrapping_add(1), Relaxed);
}

extern "C" fn worker(id: i32) {
    let id = id as usize % MAX_WORKERS;
    let mut seed = id as u32 * 7919 + 1;
    let mut turn = 0u32;
    while STOP.load(Relaxed) == 0 {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let from = (seed >> 8) as usize % ACCOUNTS;
        let to = (seed >> 12) as usize % ACCOUNTS;
        let amount = ((seed >> 16) % 400) as i64;
        let f = fee(amount);
        TAGS[id].store(VERSION, Relaxed);
        BALANCES[from].fetch_sub(amount + f, Relaxed);
        wp_guest::yield_now();
        BALANCES[to].fetch_add(amount, Relaxed);
        BALANCES[HOUSE].fetch_add(f, Relaxed);
        bill(id, turn);
        turn = turn.wrapping_add(1);
    }
    RUNNING.fetch_sub(1, Relaxed);
}

/// Starts `n` workers (at most 64).
#[no_mangle]
pub extern "C" fn start(n: i32) {
    for i in 0..n.min(MAX_WORKERS as i32) {
        if wp_guest::spawn(worker, i).is_some() {
            RUNNING.fetch_add(1, Relaxed);
        }
    }
}

/// Asks the workers to stop; returns how many still run.
#[no_mangle]
pub extern "C" fn stop() -> i32 {
    STOP.store(1, Relaxed);
    RUNNING.load(Relaxed) as i32
}

/// The sum of all balances: less than the opening total while a worker is
/// parked mid-step (the amount and fee are taken from the payer before the
/// yield and given after it); exactly it once every worker has stopped.
#[no_mangle]
pub extern "C" fn total() -> i64 {
    BALANCES.iter().map(|b| b.load(Relaxed)).sum()
}

/// Steps completed by revision `v`'s code (1 or 2).
#[no_mangle]
pub extern "C" fn steps(v: i32) -> i64 {
    STEPS[v as usize % 3].load(Relaxed)
}

/// Steps that began in one revision and ended in the other.
#[no_mangle]
pub extern "C" fn mixed() -> i64 {
    MIXED.load(Relaxed)
}

/// Steps whose worker's turn count disagreed with the steps it completed.
#[no_mangle]
pub extern "C" fn broken() -> i64 {
    BROKEN.load(Relaxed)
}

/// The house account's balance (the fees collected).
#[no_mangle]
pub extern "C" fn fees() -> i64 {
    BALANCES[HOUSE].load(Relaxed)
}

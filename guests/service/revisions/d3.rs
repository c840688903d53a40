//! `bank`, trait-object variant: each transfer is charged by a fee policy
//! chosen at run time from a table of `&dyn Fee` (per payer account), so
//! rustc calls the policy's `charge` through `call_indirect`. Money is
//! conserved: a fee moves from the payer to the house account.
//!
//! Trait-object revision 2, as `d2.rs`, but with the new items declared
//! above the older impls: rustc's impl numbering shifts, and with it the
//! symbol hash of the unchanged `<Waived as Fee>::charge` (`diff` pairs
//! the two names: `patch-format/tests/real_builds.rs`).
#![no_std]

use core::sync::atomic::{AtomicI64, AtomicU32, Ordering::Relaxed};

const ACCOUNTS: usize = 8;
const OPENING: i64 = 1000;
/// The house account, which collects fees and pays none.
const HOUSE: usize = 7;
/// Which revision of the code this is: stamped on every charged step.
const VERSION: u32 = 3;
const MAX_WORKERS: usize = 64;
/// Yields inside each step of worker 0 (the others yield once).
const SLOW_YIELDS: u32 = 8;

static BALANCES: [AtomicI64; ACCOUNTS] = [const { AtomicI64::new(OPENING) }; ACCOUNTS];
static STOP: AtomicU32 = AtomicU32::new(0);
static RUNNING: AtomicU32 = AtomicU32::new(0);
/// Which policy of `POLICIES` charges a transfer from each account (the
/// house pays no fee); `set_policy` may change it, so the optimiser cannot
/// know which `charge` a worker calls.
static ACCOUNT_POLICY: [AtomicU32; ACCOUNTS] = {
    let mut p = [const { AtomicU32::new(0) }; ACCOUNTS];
    p[HOUSE] = AtomicU32::new(1);
    p
};
/// Whether workers call the percent policy directly on odd turns (as well
/// as through the trait object on even ones).
static DIRECT: AtomicU32 = AtomicU32::new(0);
/// Percent steps completed by revision 1, 2 and 3 (by `VERSION`); steps that
/// began in one revision and ended in the other.
static STEPS: [AtomicI64; 4] = [const { AtomicI64::new(0) }; 4];
static MIXED: AtomicI64 = AtomicI64::new(0);
/// Transfers a worker made through the trait object and by a direct call.
static CALLS: [AtomicI64; 2] = [const { AtomicI64::new(0) }; 2];
/// Per worker: the revision that began its step in progress (0 between
/// steps), and its thread id.
static BEGUN: [AtomicU32; MAX_WORKERS] = [const { AtomicU32::new(0) }; MAX_WORKERS];
static THREADS: [AtomicU32; MAX_WORKERS] = [const { AtomicU32::new(u32::MAX) }; MAX_WORKERS];

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// A fee policy: moves `amount` from `from` to `to` for worker `id`,
/// charging what it charges.
trait Fee {
    fn charge(&self, id: usize, from: usize, to: usize, amount: i64);
}

/// A fee in percent of the amount, paid to the house.
struct Percent;

/// No fee.
struct Waived;

static POLICIES: [&(dyn Fee + Sync); 2] = [&Percent, &Waived];

// New in revision 2, declared *above* the older impls (d3): rustc's
// impl numbering shifts, so `<Waived as Fee>::charge` keeps its code but
// gets another symbol hash.

/// The fee of an amount.
trait Rate {
    fn fee(&self, amount: i64) -> i64;
}

/// 1% up to 200.
struct Small;

/// 2.5% above 200.
struct Large;

impl Rate for Small {
    #[inline(never)]
    fn fee(&self, amount: i64) -> i64 {
        amount / 100
    }
}

impl Rate for Large {
    #[inline(never)]
    fn fee(&self, amount: i64) -> i64 {
        amount / 40
    }
}

static RATES: [&(dyn Rate + Sync); 2] = [&Small, &Large];

impl Fee for Percent {
    /// Begins a step stamped with `VERSION`, takes the amount and the fee,
    /// yields (so workers sit inside this method), pays them out, and ends
    /// the step in `close`.
    #[inline(never)]
    fn charge(&self, id: usize, from: usize, to: usize, amount: i64) {
        let fee = RATES[(amount > 200) as usize].fee(amount);
        BEGUN[id].store(VERSION, Relaxed);
        BALANCES[from].fetch_sub(amount + fee, Relaxed);
        // Worker 0 is slow: it yields `SLOW_YIELDS` times a step, so a
        // transition stays open while the others complete whole steps.
        let yields = if id == 0 { SLOW_YIELDS } else { 1 };
        for _ in 0..yields {
            wp_guest::yield_now();
        }
        BALANCES[to].fetch_add(amount, Relaxed);
        BALANCES[HOUSE].fetch_add(fee, Relaxed);
        close(id);
    }
}

impl Fee for Waived {
    #[inline(never)]
    fn charge(&self, _id: usize, from: usize, to: usize, amount: i64) {
        BALANCES[from].fetch_sub(amount, Relaxed);
        BALANCES[to].fetch_add(amount, Relaxed);
    }
}

/// Ends worker `id`'s step in revision `VERSION`: counts it, as mixed if
/// it began in the other revision.
#[inline(never)]
fn close(id: usize) {
    if BEGUN[id].load(Relaxed) != VERSION {
        MIXED.fetch_add(1, Relaxed);
    } else {
        STEPS[VERSION as usize].fetch_add(1, Relaxed);
    }
    BEGUN[id].store(0, Relaxed);
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
        if turn % 2 == 1 && DIRECT.load(Relaxed) != 0 {
            CALLS[1].fetch_add(1, Relaxed);
            Percent.charge(id, from, to, amount);
        } else {
            CALLS[0].fetch_add(1, Relaxed);
            let policy = ACCOUNT_POLICY[from].load(Relaxed) as usize % POLICIES.len();
            POLICIES[policy].charge(id, from, to, amount);
        }
        turn = turn.wrapping_add(1);
    }
    RUNNING.fetch_sub(1, Relaxed);
}

/// Starts `n` workers (at most 64); with `direct` nonzero they also call
/// the percent policy directly, every other turn.
#[no_mangle]
pub extern "C" fn start(n: i32, direct: i32) {
    DIRECT.store((direct != 0) as u32, Relaxed);
    for i in 0..n.min(MAX_WORKERS as i32) {
        if let Some(t) = wp_guest::spawn(worker, i) {
            THREADS[i as usize].store(t.0 as u32, Relaxed);
            RUNNING.fetch_add(1, Relaxed);
        }
    }
}

/// Sets the policy (0 percent, 1 waived) of transfers from `account`.
#[no_mangle]
pub extern "C" fn set_policy(account: i32, policy: i32) {
    ACCOUNT_POLICY[account as usize % ACCOUNTS].store(policy as u32, Relaxed);
}

/// Asks the workers to stop; returns how many still run.
#[no_mangle]
pub extern "C" fn stop() -> i32 {
    STOP.store(1, Relaxed);
    RUNNING.load(Relaxed) as i32
}

/// The sum of all balances: less than the opening total while a worker is
/// inside a percent step (the amount and fee are taken before its yield and
/// paid after it); exactly it once every worker has stopped.
#[no_mangle]
pub extern "C" fn total() -> i64 {
    BALANCES.iter().map(|b| b.load(Relaxed)).sum()
}

/// Percent steps completed by revision `v`'s code (1, 2 or 3).
#[no_mangle]
pub extern "C" fn steps(v: i32) -> i64 {
    STEPS[v as usize % 4].load(Relaxed)
}

/// Steps that began in one revision and ended in the other.
#[no_mangle]
pub extern "C" fn mixed() -> i64 {
    MIXED.load(Relaxed)
}

/// Transfers made through the trait object (`kind` 0) or by a direct call
/// of the percent policy (1).
#[no_mangle]
pub extern "C" fn calls(kind: i32) -> i64 {
    CALLS[kind as usize % 2].load(Relaxed)
}

/// The revision that began worker `i`'s step in progress, 0 if none.
#[no_mangle]
pub extern "C" fn begun(i: i32) -> i32 {
    BEGUN[i as usize % MAX_WORKERS].load(Relaxed) as i32
}

/// The address of `BEGUN` (one `u32` a worker), so that a host can read
/// every worker's step at one moment, without running a thread to ask.
#[no_mangle]
pub extern "C" fn begun_at() -> i32 {
    BEGUN.as_ptr() as i32
}

/// Worker `i`'s thread id (-1 if it never started).
#[no_mangle]
pub extern "C" fn thread_of(i: i32) -> i32 {
    THREADS[i as usize % MAX_WORKERS].load(Relaxed) as i32
}

/// The house account's balance (the fees collected).
#[no_mangle]
pub extern "C" fn fees() -> i64 {
    BALANCES[HOUSE].load(Relaxed)
}

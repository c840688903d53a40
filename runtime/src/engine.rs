//! `Engine` and `Config`: the compiler settings shared by modules and stores.

use crate::errors::Error;
use crate::vm::code_memory::CodeUnit;
use cranelift_codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmparser::FuncType;

/// Runtime configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Guest thread stack size in bytes.
    pub stack_size: usize,
    /// Give every guest thread stack its own mapping with a guard page (the
    /// default). Linux caps a process at `vm.max_map_count` mappings
    /// (65,530 by default) and a guarded stack takes two, so this allows
    /// about 32,000 threads. `false` packs stacks into shared mappings
    /// without guard pages, for 100,000 threads and more: JIT code is still
    /// bounded by its stack-limit check, but host functions called from
    /// guest threads must then stay within 128 KiB of stack.
    pub guard_pages: bool,
    /// Time slice after which a busy thread is preempted at its next poll.
    pub time_slice: Duration,
    /// Run Cranelift's IR verifier on every function (slower compiles).
    pub verify: bool,
    /// Compile patchable code (the default): calls through slots, polls at
    /// loop headers and at the entries of the functions whose calls could
    /// otherwise run unboundedly (`compile/polls.rs`). `false` gives the
    /// baseline build used by benchmarks to show what patchability costs:
    /// direct calls within a module and no polls (no preemption, no
    /// patching).
    pub patchable: bool,
    /// Bytes of linear memory given to each guest thread as its own
    /// linear-memory stack, in instances whose module has a
    /// `__stack_pointer` global (rustc and clang output): the runtime
    /// switches that global with the thread (`store/guest_stacks.rs`). The
    /// first thread takes the module's own stack; each other live thread
    /// gets a region of this size, grown at the end of memory 0 and reused
    /// after the thread ends. Rounded up to whole pages; 0 turns the
    /// switching off (all threads then share the module's stack).
    pub guest_stack_size: u32,
    /// Compile loop headers so that a thread living in a loop can have its
    /// frame moved to a new version of the function there (frame transfer,
    /// `docs/transfer.md`). Off by default: it costs run time in loops
    /// (every local is kept for the header's cold path), and frames of code
    /// compiled without it never move (their threads wait, as always).
    pub frame_transfer: bool,
    /// Inline small leaf functions (no loop, no call, no builtin: no safe
    /// point) into their callers in the patchable build
    /// (`compile/inline.rs`). A bundle that changes an inlined function
    /// also replaces every function that inlined it (docs/consistency.md
    /// rule 18). Ignored by the baseline build and with `frame_transfer`
    /// (whose loop maps describe un-inlined code). `false` compiles the
    /// same code as before inlining existed.
    pub inline: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            stack_size: 2 << 20,
            guard_pages: true,
            time_slice: Duration::from_millis(5),
            verify: false,
            patchable: true,
            guest_stack_size: 128 << 10,
            frame_transfer: false,
            inline: false,
        }
    }
}

pub(crate) struct EngineInner {
    isa: OwnedTargetIsa,
    config: Config,
    signatures: Mutex<HashMap<FuncType, u32>>,
    /// The epoch (`Engine::increment_epoch`), shared with every store's
    /// preemption target, which compares it with the store's deadline.
    epoch: Arc<std::sync::atomic::AtomicU64>,
    /// The poll stub every guest thread's polls call (`VMThread.poll_stub`).
    poll_stub: Arc<CodeUnit>,
}

/// Compiler and runtime settings; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

impl Engine {
    /// An engine for the host CPU.
    ///
    /// # Errors
    /// [`Error::Unsupported`] when the host CPU is not supported by Cranelift.
    pub fn new(config: Config) -> Result<Engine, Error> {
        let mut flags = settings::builder();
        let set = |f: &mut settings::Builder, k: &str, v: &str| {
            f.set(k, v)
                .map_err(|e| Error::Unsupported(format!("cranelift flag {k}={v}: {e}")))
        };
        set(&mut flags, "opt_level", "speed")?;
        set(&mut flags, "preserve_frame_pointers", "true")?;
        set(&mut flags, "enable_probestack", "true")?;
        set(&mut flags, "probestack_strategy", "inline")?;
        // Results beyond the `tail` convention's registers (8 integer, 8
        // float) go through a return area the caller passes (issue 11).
        set(&mut flags, "enable_multi_ret_implicit_sret", "true")?;
        set(
            &mut flags,
            "enable_verifier",
            if config.verify { "true" } else { "false" },
        )?;
        let isa_builder =
            cranelift_native::builder().map_err(|e| Error::Unsupported(e.to_string()))?;
        let isa = isa_builder
            .finish(settings::Flags::new(flags))
            .map_err(|e| Error::Unsupported(e.to_string()))?;
        let poll_stub = crate::compile::trampolines::compile_poll_stub(
            &*isa,
            crate::thread::poll::slow_path_address(),
        )?;
        Ok(Engine {
            inner: Arc::new(EngineInner {
                isa,
                config,
                signatures: Mutex::new(HashMap::new()),
                epoch: Arc::new(std::sync::atomic::AtomicU64::new(0)),
                poll_stub,
            }),
        })
    }

    /// Advance the epoch by one, from any OS thread: every guest of a store
    /// of this engine whose epoch deadline is now reached traps with
    /// [`TrapKind::Interrupt`](crate::TrapKind::Interrupt) within one time
    /// slice (at its next poll after the slice ends), as in wasmtime.
    pub fn increment_epoch(&self) {
        self.inner
            .epoch
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// The current epoch.
    pub(crate) fn epoch(&self) -> &Arc<std::sync::atomic::AtomicU64> {
        &self.inner.epoch
    }

    /// The target ISA.
    pub(crate) fn isa(&self) -> &dyn TargetIsa {
        &*self.inner.isa
    }

    /// Entry address of the poll stub, for `VMThread.poll_stub`.
    pub(crate) fn poll_stub(&self) -> usize {
        self.inner.poll_stub.entry(0) as usize
    }

    /// Entry address of the transfer stub, which transfer polls call
    /// (`docs/transfer.md`); it lives as long as the engine.
    pub(crate) fn transfer_stub(&self) -> usize {
        self.inner.poll_stub.entry(1) as usize
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Engine-wide id of a function signature (equal types, equal ids).
    pub(crate) fn signature_id(&self, ty: &FuncType) -> u32 {
        let mut sigs = self
            .inner
            .signatures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let next = sigs.len() as u32 + 1;
        *sigs.entry(ty.clone()).or_insert(next)
    }

    /// Whether two engines are the same.
    pub fn same(a: &Engine, b: &Engine) -> bool {
        Arc::ptr_eq(&a.inner, &b.inner)
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new(Config::default()).expect("host CPU supported by Cranelift")
    }
}

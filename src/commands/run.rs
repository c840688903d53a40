//! `wasm-patch run [--invoke NAME] FILE [ARGS...]`, following wasmtime's
//! conventions: with `--invoke`, call that export with ARGS (parsed by the
//! parameter types) and print each result on its own line; without it, run
//! `_start`. The run ends when that call returns. A trap prints its kind and
//! wasm backtrace to stderr and exits with status 134 (as wasmtime does).

use anyhow::{bail, Context};
use wasm_patch_runtime::{Engine, Error, Linker, Module, Store, Val, ValType};

/// Arguments of `wasm-patch run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Call this exported function instead of `_start`.
    #[arg(long, value_name = "NAME")]
    pub invoke: Option<String>,
    /// The module: binary `.wasm` or text `.wat`.
    pub file: std::path::PathBuf,
    /// Arguments for the invoked function (integers in decimal, floats as
    /// decimals).
    #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
    pub args: Vec<String>,
}

/// Exit status of a run that trapped.
pub const TRAP_EXIT: i32 = 134;

fn parse_arg(s: &str, ty: ValType) -> anyhow::Result<Val> {
    Ok(match ty {
        ValType::I32 => Val::I32(
            s.parse::<i64>()
                .with_context(|| format!("`{s}` is not an i32"))? as i32,
        ),
        ValType::I64 => Val::I64(
            s.parse::<i64>()
                .with_context(|| format!("`{s}` is not an i64"))?,
        ),
        ValType::F32 => Val::F32(
            s.parse::<f32>()
                .with_context(|| format!("`{s}` is not an f32"))?
                .to_bits(),
        ),
        ValType::F64 => Val::F64(
            s.parse::<f64>()
                .with_context(|| format!("`{s}` is not an f64"))?
                .to_bits(),
        ),
        other => bail!("cannot pass a {other:?} argument from the command line"),
    })
}

/// Entry point.
pub fn main(args: RunArgs) -> anyhow::Result<i32> {
    let engine = Engine::default();
    let module = Module::from_file(&engine, &args.file)?;
    let mut store = Store::new(&engine, ());
    let mut linker = Linker::new();
    linker.add_thread_abi();
    let instance = match linker.instantiate(&mut store, &module) {
        Ok(i) => i,
        Err(Error::Trap(t)) => {
            eprintln!("error: start function trapped\n{t}");
            return Ok(TRAP_EXIT);
        }
        Err(e) => return Err(e).with_context(|| format!("instantiating {}", args.file.display())),
    };
    let name = args.invoke.as_deref().unwrap_or("_start");
    let func = instance
        .get_func(&store, name)
        .with_context(|| format!("{} has no exported function `{name}`", args.file.display()))?;
    let ty = func.ty(&store);
    if ty.params().len() != args.args.len() {
        bail!(
            "`{name}` takes {} argument(s), {} given",
            ty.params().len(),
            args.args.len()
        );
    }
    let vals = args
        .args
        .iter()
        .zip(ty.params())
        .map(|(s, t)| parse_arg(s, *t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    match func.call(&mut store, &vals) {
        Ok(results) => {
            for r in results {
                println!("{r}");
            }
            Ok(0)
        }
        Err(Error::Trap(t)) => {
            eprintln!(
                "error: failed to run `{name}` in {}\n{t}",
                args.file.display()
            );
            Ok(TRAP_EXIT)
        }
        Err(e) => Err(e.into()),
    }
}

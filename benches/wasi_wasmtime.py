"""Runs a wasm32-wasip1 module under wasmtime (the `wasmtime` PyPI package)
with its stdout inherited: `python3 wasi_wasmtime.py FILE.wasm [ARGS...]`.
The comparison side of `benches/wasi.rs` (1,000,000 lines to a pipe)."""

import sys

import wasmtime


def main():
    path = sys.argv[1]
    engine = wasmtime.Engine()
    module = wasmtime.Module.from_file(engine, path)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    wasi = wasmtime.WasiConfig()
    wasi.argv = [path] + sys.argv[2:]
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    store = wasmtime.Store(engine)
    store.set_wasi(wasi)
    instance = linker.instantiate(store, module)
    start = instance.exports(store)["_start"]
    try:
        start(store)
    except wasmtime.ExitTrap as e:
        sys.exit(e.code)


if __name__ == "__main__":
    main()

// Checks the built guest modules under node's WebAssembly engine (V8):
// no imports, a `name` custom section, exports `memory` and `run`, and
// run(ARG) equal to guests/built/EXPECTED.txt (computed natively).
//
//   node guests/rust/check-wasm.mjs [BUILT_DIR]
import { readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const dir = process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), "..", "built");
const lines = readFileSync(join(dir, "EXPECTED.txt"), "utf8").trim().split("\n");
let failed = 0;
let passed = 0;
for (const line of lines) {
  const [name, arg, expected] = line.trim().split(/\s+/);
  const bytes = readFileSync(join(dir, `${name}.wasm`));
  const mod = new WebAssembly.Module(bytes);
  const problems = [];
  const imports = WebAssembly.Module.imports(mod);
  if (imports.length) problems.push(`imports ${JSON.stringify(imports)}`);
  if (WebAssembly.Module.customSections(mod, "name").length !== 1) problems.push("no name section");
  const exports = WebAssembly.Module.exports(mod);
  const kind = (n) => exports.find((e) => e.name === n)?.kind;
  if (kind("memory") !== "memory") problems.push("no memory export");
  if (kind("run") !== "function") problems.push("no run export");
  let ms = NaN;
  if (!problems.length) {
    const { exports: ex } = new WebAssembly.Instance(mod, {});
    const times = [];
    let got;
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      const v = ex.run(Number(arg));
      times.push(performance.now() - t);
      if (got !== undefined && v !== got) problems.push(`not deterministic: ${got} then ${v}`);
      got = v;
    }
    ms = Math.min(...times);
    if (String(got) !== expected) problems.push(`run(${arg}) = ${got}, expected ${expected}`);
  }
  const status = problems.length ? "FAIL" : "ok";
  console.log(`${status.padEnd(4)} ${name.padEnd(8)} ${String(bytes.length).padStart(7)} B  run(${arg}) ${ms.toFixed(1).padStart(7)} ms  ${problems.join("; ")}`);
  if (problems.length) failed++;
  else passed++;
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);

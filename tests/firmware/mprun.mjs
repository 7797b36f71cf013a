// Run one firmware test script under the real MicroPython (wasm build, npm
// @micropython/micropython-webassembly-pyscript) with Node:
//   node tests/firmware/mprun.mjs SCRIPT DIR[:DEST] ...
// Each DIR's files are copied into the interpreter's file system under DEST
// (default /lib, which is on sys.path). Exit status 1 on a Python exception.
import { loadMicroPython } from "../../node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs";
import fs from "fs";
import path from "path";

const [script, ...dirs] = process.argv.slice(2);
const mp = await loadMicroPython({
  heapsize: 16 * 1024 * 1024,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});
const mkdir = (d) => { try { mp.FS.mkdir(d); } catch (e) { /* exists */ } };
mkdir("/lib");
for (const spec of dirs) {
  const i = spec.lastIndexOf(":");
  const [src, dest] = i > 0 ? [spec.slice(0, i), spec.slice(i + 1)] : [spec, "/lib"];
  mkdir(dest);
  for (const f of fs.readdirSync(src)) {
    const p = path.join(src, f);
    if (fs.statSync(p).isFile()) mp.FS.writeFile(dest + "/" + f, fs.readFileSync(p));
  }
}
try {
  mp.runPython(fs.readFileSync(script, "utf8"));
} catch (e) {
  if (e.name === "PythonError") {
    if (e.type !== "SystemExit") process.stderr.write(e.message + "\n");
    process.exit(1);
  }
  throw e;
}

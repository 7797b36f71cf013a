// Run one Python script under the real MicroPython interpreter (wasm build of
// npm @micropython/micropython-webassembly-pyscript) with host folders copied
// into its in-memory filesystem. Used by tests/firmware/harness.py and
// bench/bench_firmware.py.
//
//   node tests/firmware/mp_run.mjs [--heap BYTES] [--put HOSTDIR=MPDIR]...
//        [--path MPDIR]... [--cwd MPDIR] SCRIPT.py
//
// --put copies every regular file below HOSTDIR (recursively) to MPDIR;
// --path prepends MPDIR to sys.path; the script runs as __main__ with cwd
// --cwd. Exit status: 0, the SystemExit code, or 1 for an uncaught exception
// (its traceback goes to stderr).
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const mjs = path.join(root, "node_modules", "@micropython",
  "micropython-webassembly-pyscript", "micropython.mjs");

const args = process.argv.slice(2);
let heap = 1024 * 1024;
const puts = [];
const paths = [];
let cwd = "/";
let script = null;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--heap") heap = parseInt(args[++i], 10);
  else if (a === "--put") puts.push(args[++i]);
  else if (a === "--path") paths.push(args[++i]);
  else if (a === "--cwd") cwd = args[++i];
  else script = a;
}
if (!script) {
  process.stderr.write("usage: mp_run.mjs [--heap N] [--put HOST=MP] [--path MP] [--cwd MP] script.py\n");
  process.exit(2);
}

const { loadMicroPython } = await import(pathToFileURL(mjs).href);
const mp = await loadMicroPython({
  heapsize: heap,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});

function mkdirs(p) {
  let cur = "";
  for (const part of p.split("/").filter(Boolean)) {
    cur += "/" + part;
    try { mp.FS.mkdir(cur); } catch (e) { /* exists */ }
  }
}

function copyTree(host, dest) {
  mkdirs(dest);
  for (const ent of fs.readdirSync(host, { withFileTypes: true })) {
    if (ent.name === "__pycache__" || ent.name.startsWith(".")) continue;
    const h = path.join(host, ent.name);
    const d = dest.replace(/\/$/, "") + "/" + ent.name;
    if (ent.isDirectory()) copyTree(h, d);
    else if (ent.isFile()) mp.FS.writeFile(d, fs.readFileSync(h));
  }
}

for (const spec of puts) {
  const eq = spec.indexOf("=");
  copyTree(spec.slice(0, eq), spec.slice(eq + 1));
}
mkdirs("/tmp");
mkdirs(cwd);

const pre = "import sys, os\nsys.path[:0] = " + JSON.stringify(paths) +
  "\nos.chdir(" + JSON.stringify(cwd) + ")\n";
let status = 0;
try {
  mp.runPython(pre);
  // A line "# mp_run: split" cuts the script into chunks run one after the
  // other in the same interpreter: the wasm build's gc.collect() frees
  // nothing inside one runPython call (stale stack roots), so heap figures
  // are taken at chunk boundaries.
  for (const chunk of fs.readFileSync(script, "utf8").split(/^# mp_run: split$/m)) {
    mp.runPython(chunk);
  }
} catch (e) {
  const type = e && e.type;
  const text = (e && e.message) || String(e);
  if (type === "SystemExit") {
    const after = text.slice(text.lastIndexOf("SystemExit:") + 11).trim();
    if (after === "" || after === "None") status = 0;
    else if (/^-?\d+$/.test(after)) status = parseInt(after, 10);
    else { process.stderr.write(after + "\n"); status = 1; }
  } else {
    process.stderr.write(text + "\n");
    status = 1;
  }
}
process.exit(status);

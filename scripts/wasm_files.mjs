// The files the tfjs wasm backend loads at run time, copied beside a bundle (esbuild copies none of them):
// the three .wasm binaries, and for the multi-threaded build its Emscripten factory script and its
// pthread worker script. tfjs-backend-wasm hands those two to its workers as Blob URLs, which Node's
// worker_threads cannot load; sidecar/backend/wasm_threads.ts points the workers at these files instead.
import { cpSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export function copyWasmFiles(dest) {
  mkdirSync(dest, { recursive: true });
  const pkg = dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
  for (const f of readdirSync(join(pkg, 'dist')).filter((f) => f.endsWith('.wasm'))) cpSync(join(pkg, 'dist', f), join(dest, f));
  cpSync(join(pkg, 'wasm-out', 'tfjs-backend-wasm-threaded-simd.js'), join(dest, 'tfjs-backend-wasm-threaded-simd.js'));
  // The package ships the worker as a CommonJS module exporting its source text; tfjs escapes the
  // newlines inside its string literals before making a script of it, and so do we.
  const { wasmWorkerContents } = require(join(pkg, 'wasm-out', 'tfjs-backend-wasm-threaded-simd.worker.js'));
  writeFileSync(join(dest, 'tfjs-backend-wasm-threaded-simd.worker.js'), wasmWorkerContents.replace(/\n/g, '\\n'));
}

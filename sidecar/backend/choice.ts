/**
 * Choosing the TensorFlow.js backend, in order of speed: tfjs-node-gpu (CUDA), tfjs-node (native CPU),
 * WebGPU on a real (non-software) adapter, then wasm with SIMD. The pure-JS `cpu` backend (under
 * 1 GFLOP/s) is used only when asked for by name, or when everything else failed, and then with a warning.
 * Every attempt is recorded, so `loraxs doctor` can say why each backend was or was not taken.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from './tf';
import { patchWasmMatMul } from './wasm_matmul';
import { getThreadsCount, setWasmPaths, setThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { threadedWasmUnavailable, wasmThreadsWanted, withThreadedWasm } from './wasm_threads';

export type BackendName = 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';

export interface BackendAttempt {
  candidate: string;
  ok: boolean;
  why: string;
}

export interface BackendInfo {
  name: BackendName;
  /** Why this backend was chosen (and why the faster ones were not). */
  attempts: BackendAttempt[];
  /** Bytes the backend can hold; models larger than this are refused before loading. */
  memoryLimitBytes: number;
  /** wasm only: the threads of XNNPACK's pool (1: single-threaded). */
  threads?: number;
  warning?: string;
}

/** The wasm heap stops at 4 GB (32-bit addressing). */
export const WASM_HEAP_LIMIT = 4 * 1024 ** 3;

let chosen: BackendInfo | undefined;

/** Where the tfjs wasm binaries are: beside the bundle (dist/wasm, packaged) or in node_modules. */
export function wasmDirectory(): string {
  const candidates = [path.join(__dirname, 'wasm'), path.join(__dirname, '..', 'dist', 'wasm')];
  try {
    candidates.push(path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist'));
  } catch {
    /* not resolvable from a bundle; the folders above are enough */
  }
  const dir = candidates.find((d) => fs.existsSync(path.join(d, 'tfjs-backend-wasm-simd.wasm')));
  if (!dir) throw new Error(`the tfjs wasm binaries were not found in ${candidates.join(', ')}; run npm run build`);
  return dir + path.sep;
}

async function tryNative(pkg: string, attempts: BackendAttempt[]): Promise<boolean> {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require(pkg);
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    const why = /Cannot find module/.test(msg) && msg.includes(pkg)
      ? 'not installed (optional dependency)'
      : `installed but failed to load (its native libtensorflow is missing when npm blocks its install script; run \`npm rebuild ${pkg}\` with scripts allowed): ${msg}`;
    attempts.push({ candidate: pkg, ok: false, why });
    return false;
  }
  const ok = await tf.setBackend('tensorflow');
  attempts.push({ candidate: pkg, ok, why: ok ? 'native TensorFlow loaded' : 'loaded but the tensorflow backend did not initialise' });
  return ok;
}

async function tryWebGpu(attempts: BackendAttempt[]): Promise<boolean> {
  let gpu: { requestAdapter(): Promise<{ info?: { architecture?: string; description?: string } } | null> } | undefined;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const webgpu = require('webgpu') as { create(opts: string[]): typeof gpu; globals: object };
    gpu = webgpu.create([]);
    Object.assign(globalThis, webgpu.globals);
  } catch {
    attempts.push({ candidate: 'webgpu', ok: false, why: 'the `webgpu` package (Dawn) is not installed' });
    return false;
  }
  const adapter = await gpu!.requestAdapter().catch(() => null);
  if (!adapter) {
    attempts.push({ candidate: 'webgpu', ok: false, why: 'no WebGPU adapter' });
    return false;
  }
  const arch = adapter.info?.architecture ?? '';
  if (arch === 'software' || /llvmpipe|lavapipe|swiftshader/i.test(adapter.info?.description ?? '')) {
    attempts.push({ candidate: 'webgpu', ok: false, why: `adapter is a software renderer (${adapter.info?.description ?? arch}); slower than wasm` });
    return false;
  }
  attempts.push({ candidate: 'webgpu', ok: false, why: 'a hardware adapter exists but @tensorflow/tfjs-backend-webgpu is not bundled in this build' });
  return false;
}

async function tryWasm(attempts: BackendAttempt[]): Promise<boolean> {
  let dir: string;
  let threads: number;
  try {
    threads = wasmThreadsWanted();
  } catch (e) {
    threads = wasmThreadsWanted({});
    attempts.push({ candidate: 'LORAXS_WASM_THREADS', ok: false, why: `${(e as Error).message}; using ${threads} (one per core)` });
  }
  try {
    dir = wasmDirectory();
    setWasmPaths(dir);
  } catch (e) {
    attempts.push({ candidate: 'wasm', ok: false, why: (e as Error).message });
    return false;
  }
  const ready = () => {
    const n = getThreadsCount();
    // Transposed products off tfjs-wasm's slow loop and onto XNNPACK (wasm_matmul.ts).
    patchWasmMatMul();
    attempts.push({ candidate: n > 1 ? `wasm (${n} threads)` : 'wasm', ok: true, why: `WebAssembly with SIMD, ${n} thread${n > 1 ? 's' : ''}` });
    return true;
  };
  if (threads > 1) {
    const why = threadedWasmUnavailable(dir);
    if (why) attempts.push({ candidate: `wasm (${threads} threads)`, ok: false, why });
    else {
      try {
        setThreadsCount(threads);
        if (await withThreadedWasm(dir, threads, () => tf.setBackend('wasm'))) return ready();
        attempts.push({ candidate: `wasm (${threads} threads)`, ok: false, why: 'tf.setBackend("wasm") returned false' });
      } catch (e) {
        attempts.push({ candidate: `wasm (${threads} threads)`, ok: false, why: (e as Error).message });
      }
    }
  }
  try {
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
    setThreadsCount(1);
    if (await tf.setBackend('wasm')) return ready();
    attempts.push({ candidate: 'wasm', ok: false, why: 'tf.setBackend("wasm") returned false' });
  } catch (e) {
    attempts.push({ candidate: 'wasm', ok: false, why: (e as Error).message });
  }
  return false;
}

/**
 * Initialises the fastest backend that works (once per process). `prefer` (or LORAXS_BACKEND) names
 * one backend to use instead: `tensorflow`, `webgpu`, `wasm` or `cpu`.
 */
export async function initBackend(prefer: string | undefined = process.env.LORAXS_BACKEND): Promise<BackendInfo> {
  if (chosen) return chosen;
  const attempts: BackendAttempt[] = [];
  let name: BackendName | undefined;
  if (prefer === 'cpu') {
    await tf.setBackend('cpu');
    name = 'cpu';
    attempts.push({ candidate: 'cpu', ok: true, why: 'asked for by name (pure JavaScript, under 1 GFLOP/s)' });
  } else {
    const order: Array<[BackendName, () => Promise<boolean>]> = [
      ['tensorflow', async () => (await tryNative('@tensorflow/tfjs-node-gpu', attempts)) || (await tryNative('@tensorflow/tfjs-node', attempts))],
      ['webgpu', () => tryWebGpu(attempts)],
      ['wasm', () => tryWasm(attempts)],
    ];
    for (const [candidate, attempt] of order) {
      if (prefer && prefer !== candidate) continue;
      if (await attempt()) {
        name = candidate;
        break;
      }
    }
  }
  let warning: string | undefined;
  if (!name) {
    await tf.setBackend('cpu');
    name = 'cpu';
    warning = 'every fast backend failed; using the pure-JavaScript cpu backend (about 50x slower than wasm): ' +
      attempts.map((a) => `${a.candidate}: ${a.why}`).join('; ');
  }
  chosen = { name, attempts, memoryLimitBytes: name === 'wasm' ? WASM_HEAP_LIMIT : Number.POSITIVE_INFINITY, warning, ...(name === 'wasm' ? { threads: getThreadsCount() } : {}) };
  return chosen;
}

/** Measures matmul throughput on the current backend (GFLOP/s), for `loraxs doctor` and benchmarks. */
export async function measureMatmulGflops(n = 512, repeats = 5): Promise<number> {
  const a = tf.randomNormal([n, n]);
  const b = tf.randomNormal([n, n]);
  try {
    const warm = tf.matMul(a, b);
    await warm.data();
    warm.dispose();
    const t0 = performance.now();
    for (let i = 0; i < repeats; i++) {
      const c = tf.matMul(a, b);
      await c.data();
      c.dispose();
    }
    const seconds = (performance.now() - t0) / 1000 / repeats;
    return (2 * n ** 3) / seconds / 1e9;
  } finally {
    a.dispose();
    b.dispose();
  }
}

/**
 * Choosing the TensorFlow.js backend, in order of speed: native TensorFlow (native.ts: the binding that
 * `npm run setup:native` builds, or an installed tfjs-node / tfjs-node-gpu), then wasm with SIMD. The pure-JS `cpu` backend (under
 * 1 GFLOP/s) is used only when asked for by name, or when everything else failed, and then with a warning.
 * Every attempt is recorded, so `loraxs doctor` can say why each backend was or was not taken.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from './tf';
import { patchWasmMatMul } from './wasm_matmul';
import { getThreadsCount, setWasmPaths, setThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { threadedWasmUnavailable, wasmThreadsWanted, withThreadedWasm } from './wasm_threads';
import { findNativeInstalls, loadNativeBackend, type NativeBackend } from './native';

export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

/**
 * WebGPU is not offered: @tensorflow/tfjs-backend-webgpu is not bundled, and the only adapters measured
 * on these machines were software renderers (Dawn on Mesa lavapipe: about 3.7 GFLOP/s, slower than wasm).
 */
export const WEBGPU_NOT_OFFERED = 'not offered: @tensorflow/tfjs-backend-webgpu is not bundled in this build (for a GPU use the native backend, `npm run setup:native`)';

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
  /** tensorflow only: TensorFlow's version (of the libtensorflow loaded) and the folder it came from. */
  tensorflowVersion?: string;
  nativeDir?: string;
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

/**
 * The native TensorFlow backend (native.ts): tfjs-node's binding built by `npm run setup:native` (or an
 * installed tfjs-node / tfjs-node-gpu), registered into the engine's own tfjs-core.
 */
async function tryNative(attempts: BackendAttempt[]): Promise<NativeBackend | undefined> {
  const problems: string[] = [];
  const installs = findNativeInstalls(process.env, problems);
  if (!installs.length) {
    attempts.push({ candidate: 'tensorflow', ok: false, why: `not set up (run \`npm run setup:native\` to build it from PyPI's TensorFlow wheel)${problems.length ? `: ${problems.join('; ')}` : ''}` });
    return undefined;
  }
  for (const install of installs) {
    const candidate = `tensorflow (${install.packageName} from ${install.dir})`;
    let native: NativeBackend;
    try {
      native = loadNativeBackend(install);
    } catch (e) {
      attempts.push({ candidate, ok: false, why: `failed to load (rerun \`npm run setup:native -- --force\`): ${(e as Error).message.split('\n')[0]}` });
      continue;
    }
    let ok = false;
    try {
      ok = await tf.setBackend('tensorflow');
    } catch (e) {
      attempts.push({ candidate, ok: false, why: `the tensorflow backend did not initialise: ${(e as Error).message}` });
      continue;
    }
    attempts.push({ candidate, ok, why: ok ? `native TensorFlow ${native.tfVersion} loaded (${install.source})` : 'loaded but tf.setBackend("tensorflow") returned false' });
    if (ok) return native;
  }
  return undefined;
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
 * one backend to use instead: `tensorflow`, `wasm` or `cpu` (`webgpu` is not offered: it is reported and
 * the usual order is used).
 */
export async function initBackend(prefer: string | undefined = process.env.LORAXS_BACKEND): Promise<BackendInfo> {
  if (chosen) return chosen;
  const attempts: BackendAttempt[] = [];
  let notOffered: string | undefined;
  if (prefer === 'webgpu') {
    attempts.push({ candidate: 'webgpu', ok: false, why: WEBGPU_NOT_OFFERED });
    notOffered = `LORAXS_BACKEND=webgpu: WebGPU is ${WEBGPU_NOT_OFFERED}`;
    prefer = undefined;
  }
  let name: BackendName | undefined;
  let native: NativeBackend | undefined;
  if (prefer === 'cpu') {
    await tf.setBackend('cpu');
    name = 'cpu';
    attempts.push({ candidate: 'cpu', ok: true, why: 'asked for by name (pure JavaScript, under 1 GFLOP/s)' });
  } else {
    const order: Array<[BackendName, () => Promise<boolean>]> = [
      ['tensorflow', async () => {
        native = await tryNative(attempts);
        return !!native;
      }],
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
  let warning: string | undefined = notOffered;
  if (!name) {
    await tf.setBackend('cpu');
    name = 'cpu';
    warning = 'every fast backend failed; using the pure-JavaScript cpu backend (about 50x slower than wasm): ' +
      attempts.map((a) => `${a.candidate}: ${a.why}`).join('; ');
  }
  chosen = {
    name, attempts, memoryLimitBytes: name === 'wasm' ? WASM_HEAP_LIMIT : Number.POSITIVE_INFINITY, warning,
    ...(name === 'wasm' ? { threads: getThreadsCount() } : {}),
    ...(name === 'tensorflow' && native ? { tensorflowVersion: native.tfVersion, nativeDir: native.install.dir } : {}),
  };
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

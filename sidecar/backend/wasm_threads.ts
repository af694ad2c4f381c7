/**
 * Multi-threaded WebAssembly under Node. tfjs-backend-wasm 4.22 ships a threaded SIMD build (XNNPACK on
 * a pthread pool) but turns it off under Node (tfjs issue 3830): its flag says no, it hands the pthread
 * workers their scripts as Blob URLs, which Node's worker_threads cannot load, and its C side caps the
 * pool at half the cores Emscripten reports. On this 2-core machine two threads give 1.5-1.7x the matmul
 * throughput of one.
 *
 * While the backend initialises, `withThreadedWasm` (1) sets the flag, (2) gives Emscripten a Worker
 * class that loads the worker and factory scripts copied beside the bundle (scripts/wasm_files.mjs)
 * instead of the Blob URLs, and keeps the workers from holding the process open (the pool's threads
 * never return, so Emscripten's `ref()` on them would keep a finished CLI alive), and (3) lets Emscripten
 * see twice the requested thread count in cores, so the pool gets the threads asked for. (2) and (3) are
 * undone afterwards; Emscripten keeps its own reference to the Worker class for the workers it starts later.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from './tf';

export const THREADED_WORKER_FILE = 'tfjs-backend-wasm-threaded-simd.worker.js';
export const THREADED_FACTORY_FILE = 'tfjs-backend-wasm-threaded-simd.js';
/** Emscripten starts this many pthread workers up front; a pool larger than that would deadlock. */
export const MAX_WASM_THREADS = 8;

// The real module objects (an ES namespace import would be a copy that Emscripten does not read).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const nodeOs = require('node:os') as typeof import('node:os');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const workerThreads = require('node:worker_threads') as typeof import('node:worker_threads');

/**
 * Threads wanted: LORAXS_WASM_THREADS when set (1 turns threading off), else one per core, at most
 * MAX_WASM_THREADS. Throws on a value that is not a positive integer.
 */
export function wasmThreadsWanted(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.LORAXS_WASM_THREADS;
  if (raw !== undefined && raw !== '') {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1) throw new Error(`LORAXS_WASM_THREADS must be a positive integer, got ${JSON.stringify(raw)}`);
    return Math.min(n, MAX_WASM_THREADS);
  }
  return Math.max(1, Math.min(nodeOs.cpus().length, MAX_WASM_THREADS));
}

/** Why threaded wasm cannot run here (undefined when it can). */
export function threadedWasmUnavailable(wasmDir: string): string | undefined {
  if (typeof SharedArrayBuffer === 'undefined') return 'SharedArrayBuffer is not available in this runtime';
  for (const f of [THREADED_WORKER_FILE, THREADED_FACTORY_FILE, 'tfjs-backend-wasm-threaded-simd.wasm']) {
    if (!fs.existsSync(path.join(wasmDir, f))) return `${f} is missing from ${wasmDir} (run npm run build)`;
  }
  return undefined;
}

/** Runs `init` (which initialises the wasm backend) with the threaded build enabled for `threads` threads. */
export async function withThreadedWasm<T>(wasmDir: string, threads: number, init: () => Promise<T>): Promise<T> {
  const workerFile = path.join(wasmDir, THREADED_WORKER_FILE);
  const factoryFile = path.join(wasmDir, THREADED_FACTORY_FILE);
  const NodeWorker = workerThreads.Worker;
  class WasmPthreadWorker extends NodeWorker {
    private readonly pthread: boolean;

    constructor(url: string | URL, options?: import('node:worker_threads').WorkerOptions) {
      const fromTfjs = String(url).startsWith('blob:');
      super(fromTfjs ? workerFile : url, options);
      this.pthread = fromTfjs;
      if (!fromTfjs) return;
      super.unref();
      const post = this.postMessage.bind(this);
      this.postMessage = (message: unknown, transfer?: readonly import('node:worker_threads').TransferListItem[]) => {
        const m = message as { cmd?: string } | null;
        post(m && m.cmd === 'load' ? { ...m, urlOrBlob: factoryFile } : message, transfer);
      };
    }

    override ref(): void {
      // The pool's workers never keep the process alive; other workers behave as usual.
      if (!this.pthread) super.ref();
    }
  }
  const cpus = nodeOs.cpus;
  (workerThreads as { Worker: typeof NodeWorker }).Worker = WasmPthreadWorker;
  nodeOs.cpus = () => {
    const real = cpus();
    return Array.from({ length: Math.max(real.length, 2 * threads) }, (_, i) => real[i % real.length]);
  };
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  try {
    return await init();
  } finally {
    (workerThreads as { Worker: typeof NodeWorker }).Worker = NodeWorker;
    nodeOs.cpus = cpus;
  }
}

/**
 * The native TensorFlow backend, registered into the engine's one tfjs-core.
 *
 * `npm run setup:native` (scripts/setup-native.mjs) builds @tensorflow/tfjs-node's N-API binding against the
 * libtensorflow of PyPI's TensorFlow wheel into one folder (default `.cache/native/tfjs-node-cpu`). A
 * `require('@tensorflow/tfjs-node')` would load the CommonJS `@tensorflow/tfjs` beside the ESM tfjs-core
 * bundled here: two engines, two Tensor classes, every kernel registered twice ("already registered").
 * Instead this module loads only tfjs-node's backend class and kernel files, with their imports of
 * `@tensorflow/tfjs` and `@tensorflow/tfjs-core` answered by the engine's own tf module (./tf), and the
 * `.node` binding by path, so the `tensorflow` backend lives in the same engine as `wasm` and `cpu`.
 *
 * Where it looks, in order: $LORAXS_NATIVE_DIR; `.cache/native/tfjs-node-{gpu,cpu}` in a folder above
 * this bundle or $LORAXS_REPO_ROOT (a checkout); `$XDG_CACHE_HOME/loraxs-studio/native/tfjs-node-*` (what
 * the set-up writes outside a checkout, and the VS Code command uses); an installed
 * `@tensorflow/tfjs-node-gpu` / `@tensorflow/tfjs-node` package whose binding was built.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import * as tf from './tf';

/** The stamp scripts/setup-native.mjs writes into a finished build. */
export const NATIVE_STAMP = '.loraxs-native.json';
export const NATIVE_FOLDERS = ['tfjs-node-gpu', 'tfjs-node-cpu'];

export interface NativeInstall {
  /** The folder with tfjs-node's dist/, lib/napi-v*\/tfjs_binding.node and (set-up builds) deps/lib. */
  dir: string;
  binding: string;
  /** Where it was found: env, checkout, user cache, package. */
  source: string;
  /** `@tensorflow/tfjs-node` or `@tensorflow/tfjs-node-gpu` (the backend uses the name to tell a GPU build). */
  packageName: string;
  /** What it was built against: `gpu` (TensorFlow with CUDA, `setup:native --gpu`), `cpu`, or unknown. */
  variant?: 'cpu' | 'gpu';
}

export interface NativeBackend {
  install: NativeInstall;
  /** TensorFlow's own version (TF_Version of the loaded libtensorflow). */
  tfVersion: string;
}

/** The highest napi-v* binding in a tfjs-node folder, if any. */
function bindingIn(dir: string): string | undefined {
  const lib = path.join(dir, 'lib');
  let versions: number[];
  try {
    versions = fs.readdirSync(lib).map((d) => /^napi-v(\d+)$/.exec(d)).filter((m): m is RegExpExecArray => !!m).map((m) => Number(m[1]));
  } catch {
    return undefined;
  }
  for (const v of versions.sort((a, b) => b - a)) {
    const f = path.join(lib, `napi-v${v}`, 'tfjs_binding.node');
    if (fs.existsSync(f)) return f;
  }
  return undefined;
}

function packageNameOf(dir: string, fallback: string): string {
  try {
    return (JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string }).name ?? fallback;
  } catch {
    return fallback;
  }
}

/** The variant in a set-up build's stamp; an installed tfjs-node-gpu package counts as `gpu`. */
function variantOf(dir: string, packageName: string): 'cpu' | 'gpu' | undefined {
  try {
    const v = (JSON.parse(fs.readFileSync(path.join(dir, NATIVE_STAMP), 'utf8')) as { variant?: string }).variant;
    if (v === 'cpu' || v === 'gpu') return v;
  } catch {
    /* no stamp: not built by setup-native */
  }
  return packageName === '@tensorflow/tfjs-node-gpu' ? 'gpu' : undefined;
}

/** Every folder the native backend could be loaded from, best first; `problems` says why others were skipped. */
export function findNativeInstalls(env: NodeJS.ProcessEnv = process.env, problems: string[] = []): NativeInstall[] {
  const found: NativeInstall[] = [];
  const seen = new Set<string>();
  const consider = (dir: string, source: string) => {
    const resolved = path.resolve(dir);
    if (seen.has(resolved)) return;
    seen.add(resolved);
    if (!fs.existsSync(resolved)) return;
    const binding = bindingIn(resolved);
    if (!binding) {
      problems.push(`${resolved} has no built binding (lib/napi-v*/tfjs_binding.node); run npm run setup:native`);
      return;
    }
    if (!fs.existsSync(path.join(resolved, 'dist', 'nodejs_kernel_backend.js'))) {
      problems.push(`${resolved} has no dist/nodejs_kernel_backend.js`);
      return;
    }
    const packageName = packageNameOf(resolved, '@tensorflow/tfjs-node');
    found.push({ dir: resolved, binding, source, packageName, variant: variantOf(resolved, packageName) });
  };
  if (env.LORAXS_NATIVE_DIR) {
    const before = found.length;
    consider(env.LORAXS_NATIVE_DIR, 'LORAXS_NATIVE_DIR');
    if (found.length === before && !fs.existsSync(env.LORAXS_NATIVE_DIR)) problems.push(`LORAXS_NATIVE_DIR=${env.LORAXS_NATIVE_DIR} does not exist`);
  }
  const roots: string[] = [];
  if (env.LORAXS_REPO_ROOT) roots.push(env.LORAXS_REPO_ROOT);
  for (let d = __dirname; ; d = path.dirname(d)) {
    roots.push(d);
    if (path.dirname(d) === d) break;
  }
  for (const r of roots) for (const f of NATIVE_FOLDERS) consider(path.join(r, '.cache', 'native', f), 'checkout');
  const cacheHome = env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  for (const f of NATIVE_FOLDERS) consider(path.join(cacheHome, 'loraxs-studio', 'native', f), 'user cache');
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      consider(path.dirname(require.resolve(`${pkg}/package.json`)), `package ${pkg}`);
    } catch {
      /* not installed */
    }
  }
  return found;
}

/** What tfjs-node's api_pb (TensorBoard summaries, unused by the engine) is replaced by: fails if used. */
const summaryProtoStub = new Proxy({}, {
  get(_t, key) {
    if (key === '__esModule' || typeof key === 'symbol') return undefined;
    throw new Error(`TensorBoard summaries (${String(key)}) are not available in the loraxs native backend`);
  },
});

/**
 * What tfjs-node's files get for `@tensorflow/tfjs` and `@tensorflow/tfjs-core`: the engine's tf module,
 * except that KernelBackend is a plain function sharing its prototype. tfjs-node's dist is ES5 (its
 * NodeJSKernelBackend calls `_super.call(this)`), which cannot call the ES2015 class of the ESM tfjs-core;
 * KernelBackend has no constructor and no fields, so the function is equivalent (and `instanceof
 * KernelBackend` still holds).
 */
function tfForTfjsNode(): object {
  function KernelBackend(): void {
    /* KernelBackend's constructor is empty */
  }
  KernelBackend.prototype = tf.KernelBackend.prototype;
  return new Proxy(tf, {
    get: (target, key) => (key === 'KernelBackend' ? KernelBackend : (target as Record<string | symbol, unknown>)[key]),
  });
}

interface NodeModuleInternals {
  _load(request: string, parent: { filename?: string } | undefined, isMain: boolean): unknown;
}

/**
 * Loads tfjs-node's backend and kernels from `install` into the engine's tfjs-core and registers the
 * `tensorflow` backend (not yet selected: call tf.setBackend('tensorflow')). Throws when the binding
 * does not load (a missing libtensorflow, a binding built for another platform).
 */
export function loadNativeBackend(install: NativeInstall): NativeBackend {
  const req = createRequire(__filename);
  // TensorFlow's C++ INFO lines (oneDNN, CPU features) on stderr unless asked for; read when it loads.
  if (process.env.TF_CPP_MIN_LOG_LEVEL === undefined) process.env.TF_CPP_MIN_LOG_LEVEL = '2';
  // On a GPU, TensorFlow otherwise maps nearly all of its memory at start, leaving little to a second
  // process (the sidecar's server and a CLI run, doctor's probe); read when the GPU device is created.
  if (process.env.TF_FORCE_GPU_ALLOW_GROWTH === undefined) process.env.TF_FORCE_GPU_ALLOW_GROWTH = 'true';
  // The binding first: if libtensorflow does not load, nothing has been registered yet.
  const binding = req(install.binding) as { TF_Version: string };
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Module = require('node:module') as NodeModuleInternals;
  const original = Module._load;
  // Node names loaded files by their real path: a .cache reached through a symlink must match too.
  const inside = fs.realpathSync(install.dir) + path.sep;
  const tfShim = tfForTfjsNode();
  Module._load = function load(request, parent, isMain) {
    if (parent?.filename?.startsWith(inside)) {
      if (request === '@tensorflow/tfjs' || request === '@tensorflow/tfjs-core') return tfShim;
      if (request === './proto/api_pb') return summaryProtoStub;
    }
    return original.call(this, request, parent, isMain);
  };
  let Backend: new (binding: unknown, packageName: string) => tf.KernelBackend;
  try {
    Backend = (req(path.join(install.dir, 'dist', 'nodejs_kernel_backend.js')) as { NodeJSKernelBackend: typeof Backend }).NodeJSKernelBackend;
    if (tf.getKernelsForBackend('tensorflow').length === 0) req(path.join(install.dir, 'dist', 'register_all_kernels.js'));
  } finally {
    Module._load = original;
  }
  if (!tf.findBackendFactory('tensorflow')) tf.registerBackend('tensorflow', () => new Backend(binding, install.packageName), 3);
  return { install, tfVersion: binding.TF_Version };
}

export interface NativeGpuReport {
  /** `gpu`: TensorFlow built with CUDA (`setup:native --gpu`); `cpu`; or unknown. */
  variant?: 'cpu' | 'gpu';
  /** Whether TensorFlow placed the backend on a GPU (tfjs-node's isUsingGpuDevice, in a fresh process). */
  usingGpu: boolean;
  /** The GPUs TensorFlow created devices for, from its log: `GPU:0 NVIDIA H200 (compute capability 9.0, 139 GB)`. */
  devices: string[];
  /** TensorFlow's log lines about CUDA and GPUs (why none was used, which libraries did not load). */
  notes: string[];
  /** When the probe itself failed (the binding did not load, timed out). */
  error?: string;
}

/**
 * Which GPU the native build in `dir` runs on. The binding exposes only isUsingGpuDevice(), so the names
 * come from TensorFlow's own log ("Created device ... GPU:0 ... name: NVIDIA H200, ... compute capability:
 * 9.0"), read from a fresh Node process that loads the binding with TF_CPP_MIN_LOG_LEVEL=0 (TensorFlow
 * writes its log to file descriptor 2, which this process cannot capture). Takes a second or two; for
 * `loraxs doctor`, not for every start. Run it before this process loads TensorFlow on a GPU, so the
 * probe's device sees the GPU's free memory.
 */
export function probeNativeGpu(dir: string, timeoutMs = 120_000): NativeGpuReport {
  const variant = variantOf(dir, packageNameOf(dir, '@tensorflow/tfjs-node'));
  const binding = bindingIn(dir);
  if (!binding) return { variant, usingGpu: false, devices: [], notes: [], error: `${dir} has no built binding` };
  // A build whose stamp says CPU has no CUDA in it: nothing to ask a second TensorFlow process.
  if (variant === 'cpu') return { variant, usingGpu: false, devices: [], notes: [] };
  const script = `process.stdout.write(JSON.stringify({ gpu: require(${JSON.stringify(binding)}).isUsingGpuDevice() }))`;
  const r = spawnSync(process.execPath, ['-e', script], {
    encoding: 'utf8', timeout: timeoutMs, env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '0', TF_FORCE_GPU_ALLOW_GROWTH: 'true', ELECTRON_RUN_AS_NODE: '1' },
  });
  // "2026-12-01 11:00:00.000000: I external/.../gpu_device.cc:2020] Created device ..." -> the message.
  const lines = (r.stderr || '').split('\n').map((l) => l.replace(/^.*?\.cc:\d+\]\s*/, '').trim()).filter(Boolean);
  const devices: string[] = [];
  for (const l of lines) {
    const m = /Created device \S*device:(GPU:\d+) with (\d+) MB memory:.*name: ([^,]+),.*compute capability: ([\d.]+)/.exec(l);
    if (m) devices.push(`${m[1]} ${m[3].trim()} (compute capability ${m[4]}, ${(Number(m[2]) / 1024).toFixed(0)} GiB for TensorFlow)`);
  }
  const notes = lines.filter((l) => /cuda|gpu|dlopen|dynamic librar|driver/i.test(l) && !/Created device/.test(l)).slice(0, 8);
  let usingGpu = false;
  let error: string | undefined;
  if (r.error) error = r.error.message;
  else if (r.status !== 0) error = `the probe exited with ${r.status ?? r.signal}: ${lines.slice(-2).join(' ')}`;
  else {
    try {
      usingGpu = (JSON.parse(r.stdout) as { gpu: boolean }).gpu === true;
    } catch {
      error = `the probe printed ${JSON.stringify(r.stdout.slice(0, 200))}`;
    }
  }
  return { variant, usingGpu, devices, notes, ...(error ? { error } : {}) };
}

/**
 * The same LoRA-XS layer step on each TensorFlow.js backend this machine has: T = 1024 tokens, d = 768,
 * r = 16, y = x Wᵀ + (α/r)·((x Aᵀ) Rᵀ) Bᵀ (sidecar/loraxs/adapted_context.ts adaptedLinear), loss ‖y‖²,
 * gradient for R; plus the backend's matmul GFLOP/s. Each backend runs in its own process (initBackend
 * picks once per process): wasm with 1 thread, wasm with one thread per core (sidecar/wasm_threads.ts),
 * native TensorFlow (when `npm run setup:native` built it), cpu. WebGPU is reported as not offered.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../sidecar/backend/tf';
import { initBackend, measureMatmulGflops, WEBGPU_NOT_OFFERED } from '../sidecar/backend/choice';
import { adaptedLinear, createAdaptedModule } from '../sidecar/loraxs/adapted_context';
import { Rng } from '../sidecar/rng';
import { machineInfo, median, partsDir, writePart } from './common';

async function child(name: string): Promise<Record<string, unknown>> {
  const info = await initBackend(name);
  const label = name === 'wasm' ? `wasm, ${info.threads ?? 1} thread${(info.threads ?? 1) > 1 ? 's' : ''}`
    : name === 'tensorflow' ? `tensorflow (native${info.tensorflowVersion ? ` TF ${info.tensorflowVersion}` : ''})` : name;
  if (info.name !== name) return { backend: label, available: false, why: info.attempts.map((a) => `${a.candidate}: ${a.why}`).join('; ') };
  const cpu = name === 'cpu';
  const T = cpu ? 256 : 1024;
  const d = 768;
  const r = 16;
  const rng = new Rng(1);
  const x = tf.tensor2d(rng.normalArray(T * d), [T, d]);
  const W = tf.tensor2d(rng.normalArray(d * d, 0.02), [d, d]);
  const mod = createAdaptedModule('m', { rank: r, outFeatures: d, inFeatures: d, A: rng.normalArray(r * d, 0.03), B: rng.normalArray(d * r, 0.03), sigma: new Float32Array(r) }, rng.normalArray(r * r, 1e-5), r);
  const step = () => {
    const t0 = performance.now();
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(adaptedLinear(x, W, undefined, mod))) as tf.Scalar, [mod.R]);
    grads[mod.R.name].dataSync();
    value.dispose();
    grads[mod.R.name].dispose();
    return (performance.now() - t0) / 1000;
  };
  step();
  const times = Array.from({ length: cpu ? 2 : 5 }, step);
  const s = median(times);
  // x·Wᵀ with the transpose flag (what every linear layer asks for) vs an explicit transpose and a plain
  // product: on wasm the flag takes sidecar/wasm_matmul.ts's path, which should be no slower.
  const xa = tf.randomNormal([cpu ? 128 : 1024, 512]);
  const wa = tf.randomNormal([1536, 512]);
  const timeMs = (f: () => tf.Tensor): number => median(Array.from({ length: cpu ? 1 : 5 }, () => {
    const t0 = performance.now();
    const y = f();
    y.dataSync();
    y.dispose();
    return performance.now() - t0;
  }));
  const flaggedMs = timeMs(() => tf.matMul(xa, wa, false, true));
  const explicitMs = timeMs(() => tf.tidy(() => tf.matMul(xa, tf.transpose(wa))));
  tf.dispose([xa, wa]);
  return {
    backend: label, available: true, threads: info.threads, tokens: T, d, r, step_s: s, tokens_per_s: T / s,
    x_wT_flagged_ms: flaggedMs, x_transpose_w_ms: explicitMs, flagged_over_explicit: flaggedMs / explicitMs,
    matmul_gflops_512: await measureMatmulGflops(512, cpu ? 1 : 5),
    matmul_gflops_1024: cpu ? null : await measureMatmulGflops(1024, 5),
    note: cpu ? `pure JavaScript; measured at T = ${T} (one tiny measurement)`
      : name === 'tensorflow' ? `tfjs-node binding on libtensorflow ${info.tensorflowVersion ?? '?'} from PyPI's wheel (npm run setup:native); TensorFlow's own thread pools`
        : `WebAssembly SIMD, ${info.threads ?? 1} thread(s) (LORAXS_WASM_THREADS)`,
  };
}

async function main(): Promise<void> {
  const [which, tag] = process.argv.slice(2);
  if (which) {
    fs.writeFileSync(path.join(partsDir, `backend-${tag}.json`), JSON.stringify(await child(which)));
    return;
  }
  const results: unknown[] = [];
  // wasm single-threaded, wasm with one thread per core (the default), and the pure-JS cpu backend.
  const runs: Array<[string, string, Record<string, string>]> = [
    ['wasm', 'wasm-1', { LORAXS_WASM_THREADS: '1' }], ['wasm', 'wasm-threads', {}], ['tensorflow', 'tensorflow', {}], ['cpu', 'cpu', {}],
  ];
  for (const [name, tag, env] of runs) {
    const out = path.join(partsDir, `backend-${tag}.json`);
    fs.mkdirSync(partsDir, { recursive: true });
    fs.rmSync(out, { force: true });
    const childEnv = { ...process.env, ...env };
    if (!('LORAXS_WASM_THREADS' in env)) delete childEnv.LORAXS_WASM_THREADS;
    spawnSync(process.execPath, [__filename, name, tag], { stdio: 'inherit', env: childEnv });
    results.push(fs.existsSync(out) ? JSON.parse(fs.readFileSync(out, 'utf8')) : { backend: tag, available: false, why: 'the measurement process failed' });
  }
  results.push({ backend: 'webgpu', available: false, why: WEBGPU_NOT_OFFERED });
  // Native ÷ wasm (one thread per core), the issue's ≥ 2× target, printed and recorded.
  const get = (tag: string) => (results as Array<Record<string, unknown>>).find((r) => r.available && String(r.backend).startsWith(tag));
  const native = get('tensorflow');
  // The default wasm: the one with the most threads.
  const wasm = (results as Array<Record<string, unknown>>).filter((r) => r.available && String(r.backend).startsWith('wasm'))
    .sort((a, b) => ((b.threads as number) ?? 1) - ((a.threads as number) ?? 1))[0];
  const nativeVsWasm = native && wasm ? {
    step_tokens_per_s: (native.tokens_per_s as number) / (wasm.tokens_per_s as number),
    matmul_512: (native.matmul_gflops_512 as number) / (wasm.matmul_gflops_512 as number),
    matmul_1024: (native.matmul_gflops_1024 as number) / (wasm.matmul_gflops_1024 as number),
    wasm: wasm.backend, target: 2,
  } : null;
  if (nativeVsWasm) {
    const met = nativeVsWasm.step_tokens_per_s >= 2;
    console.error(`[bench] backends: native ÷ ${String(wasm!.backend)}: layer step ${nativeVsWasm.step_tokens_per_s.toFixed(2)}×, matmul 512² ${nativeVsWasm.matmul_512.toFixed(2)}×, ` +
      `1024² ${nativeVsWasm.matmul_1024.toFixed(2)}×; target ≥ 2×: ${met ? 'met' : 'NOT met'}`);
    Object.assign(nativeVsWasm, { met });
  } else {
    console.error('[bench] backends: native TensorFlow not measured (npm run setup:native builds it)');
  }
  writePart('backends', { machine: machineInfo(), step: 'one LoRA-XS layer: forward + gradient of R', results, native_vs_wasm: nativeVsWasm });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

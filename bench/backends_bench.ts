/**
 * The same LoRA-XS layer step on each TensorFlow.js backend this machine has: T = 1024 tokens, d = 768,
 * r = 16, y = x Wᵀ + (α/r)·((x Aᵀ) Rᵀ) Bᵀ (sidecar/loraxs/adapted_context.ts adaptedLinear), loss ‖y‖²,
 * gradient for R; plus the backend's matmul GFLOP/s. Each backend runs in its own process (initBackend
 * picks once per process). wasm with threads and WebGPU are reported as not available with the reason
 * when they cannot run here.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../sidecar/tf';
import { initBackend, measureMatmulGflops } from '../sidecar/backend';
import { adaptedLinear, createAdaptedModule } from '../sidecar/loraxs/adapted_context';
import { Rng } from '../sidecar/rng';
import { machineInfo, median, partsDir, writePart } from './common';

async function child(name: string): Promise<Record<string, unknown>> {
  const info = await initBackend(name);
  if (info.name !== name) return { backend: name, available: false, why: info.attempts.map((a) => `${a.candidate}: ${a.why}`).join('; ') };
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
    backend: name, available: true, tokens: T, d, r, step_s: s, tokens_per_s: T / s,
    x_wT_flagged_ms: flaggedMs, x_transpose_w_ms: explicitMs, flagged_over_explicit: flaggedMs / explicitMs,
    matmul_gflops_512: await measureMatmulGflops(512, cpu ? 1 : 5),
    note: cpu ? `pure JavaScript; measured at T = ${T} (one tiny measurement)` : 'WebAssembly SIMD, 1 thread',
  };
}

async function main(): Promise<void> {
  const which = process.argv[2];
  if (which) {
    fs.writeFileSync(path.join(partsDir, `backend-${which}.json`), JSON.stringify(await child(which)));
    return;
  }
  const results: unknown[] = [];
  for (const name of ['wasm', 'cpu']) {
    const out = path.join(partsDir, `backend-${name}.json`);
    fs.mkdirSync(partsDir, { recursive: true });
    spawnSync(process.execPath, [__filename, name], { stdio: 'inherit', env: process.env });
    results.push(fs.existsSync(out) ? JSON.parse(fs.readFileSync(out, 'utf8')) : { backend: name, available: false, why: 'the measurement process failed' });
  }
  let webgpu = 'the `webgpu` npm package (Dawn) is not installed; with a software adapter (Mesa lavapipe) it measures about 3.7 GFLOP/s, slower than wasm, so it is not benchmarked here';
  try {
    require.resolve('webgpu');
    webgpu = 'the `webgpu` package is installed but @tensorflow/tfjs-backend-webgpu is not bundled (sidecar/backend.ts)';
  } catch {
    /* not installed */
  }
  results.push({ backend: 'wasm, 2 threads', available: false, why: 'tfjs-backend-wasm turns threads off under Node (and caps them at cores / 2); sidecar/backend.ts sets 1 thread' });
  results.push({ backend: 'webgpu', available: false, why: webgpu });
  results.push({ backend: 'tensorflow (tfjs-node / tfjs-node-gpu)', available: false, why: 'optional dependency, not installable offline (downloads libtensorflow)' });
  writePart('backends', { machine: machineInfo(), step: 'one LoRA-XS layer: forward + gradient of R', results });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

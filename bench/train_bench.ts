/**
 * Training throughput: tokens/s, FLOP/s and peak memory of one LoRA-XS training step (forward, backward
 * for R and the head, AdamW update) at batch 32 × sequence 128 on a BERT-base-shaped and a small
 * Llama-shaped model, engine vs a PyTorch implementation of the same step (bench/train_ref.py), measured
 * interleaved in one run on the same token ids. Two engine variants: the engine as shipped
 * (ModelSession.logits) and bench/fast_linear_context.ts (no transposed matMuls; a proposal).
 *
 * The 4 GB wasm heap does not hold the activations of 32 × 128 tokens of BERT-base, so the engine runs
 * the step as micro-batches with gradient accumulation (as training.grad_accum_steps does); one
 * micro-batch is timed and the step time is micro-batches × that + the update. Each model is measured in
 * its own process, so peak memory (max RSS) is per model.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../sidecar/backend/tf';
import { initBackend, measureMatmulGflops } from '../sidecar/backend/choice';
import { findNativeInstalls } from '../sidecar/backend/native';
import { openModelSession, type ModelSession } from '../sidecar/session/model_session';
import { batchInputs, batchLoss } from '../sidecar/train/evaluation';
import { accumulateGrads } from '../sidecar/train/grad_accumulate';
import { createOptimizer, type Optimizer } from '../sidecar/train/optimizers';
import { taskLogits } from '../sidecar/models/task_model';
import type { Batch } from '../sidecar/train/batching';
import { Rng } from '../sidecar/rng';
import { log, machineInfo, median, partsDir, peakRssBytes, PyServer, quick, scratchDir, writePart, type Reply } from './common';
import { BERT_BASE, LLAMA_SMALL, QWEN2_05B, flopsPerStep, writeBenchModel, type BenchModel } from './bench_models';
import { fastAdaptedContext } from './fast_linear_context';
import { planMicroBatches } from '../sidecar/train/micro_batches';
import { float32Bytes } from '../sidecar/io/model_folder';

const SEQ = 128;
const MODELS = [BERT_BASE, LLAMA_SMALL, QWEN2_05B];
const batchOf = (m: BenchModel): number => m.batch ?? 32;
/** Micro-batches timed per engine variant (the step time is their mean × micro-batches per step + the update). */
const TIMED_MICRO = (m: BenchModel): number => Math.min(batchOf(m) / m.microBatch, m.microBatch === 1 ? 2 : 1);
/** Memory the native backend's own best micro-batch may use (the machine is shared): LORAXS_BENCH_NATIVE_GB, default 8. */
const NATIVE_BEST_GB = Number(process.env.LORAXS_BENCH_NATIVE_GB ?? 8);

function randomBatch(m: BenchModel, batch: number, rng: Rng): Batch {
  const vocab = (m.config as { vocab_size: number }).vocab_size;
  const n = batch * SEQ;
  const inputIds = Int32Array.from({ length: n }, () => 5 + Math.floor(rng.uniform() * (vocab - 5)));
  return {
    indices: Array.from({ length: batch }, (_, i) => i), batchSize: batch, seqLen: SEQ, inputIds,
    attentionMask: new Int32Array(n).fill(1), typeIds: new Int32Array(n),
    labels: Int32Array.from({ length: batch }, () => (rng.uniform() < 0.5 ? 0 : 1)), numTokens: n,
  };
}

function slice(b: Batch, from: number, count: number): Batch {
  const s = from * SEQ;
  const e = (from + count) * SEQ;
  return {
    indices: b.indices.slice(from, from + count), batchSize: count, seqLen: SEQ, inputIds: b.inputIds.slice(s, e),
    attentionMask: b.attentionMask.slice(s, e), typeIds: b.typeIds.slice(s, e), labels: b.labels!.slice(from, from + count), numTokens: count * SEQ,
  };
}

type Variant = 'engine' | 'no-transpose';

/** Forward + backward of `micro` (accumulated), then one AdamW update; seconds of each part. */
async function engineStep(session: ModelSession, opt: Optimizer, micro: Batch[], variant: Variant, checkpointing: boolean): Promise<{ fwdBwd: number[]; update: number; loss: number }> {
  const trainable = session.trainable();
  const rng = new Rng(5);
  const fwdBwd: number[] = [];
  let grads = new Map<string, tf.Tensor>();
  let loss = 0;
  for (const batch of micro) {
    const t0 = performance.now();
    const inputs = batchInputs(batch);
    const { value, grads: g } = tf.variableGrads(() => {
      const ctxOpts = { training: true, rng, extra: session.head.trainable as Map<string, tf.Tensor>, gradientCheckpointing: checkpointing };
      const logits = taskLogits(session.backbone, session.head, inputs, variant === 'engine'
        ? session.adapters!.context(session.backbone.weights, ctxOpts)
        : fastAdaptedContext(session.backbone.weights, session.adapters!.modules, ctxOpts));
      return tf.div(batchLoss('classification', logits, batch), micro.length) as tf.Scalar;
    }, [...trainable.values()]);
    for (const t of Object.values(inputs)) if (t) t.dispose();
    loss += (await value.data())[0];
    value.dispose();
    grads = accumulateGrads(grads, g, trainable);
    await Promise.all([...grads.values()].map((t) => t.data()));
    fwdBwd.push((performance.now() - t0) / 1000);
  }
  const t1 = performance.now();
  opt.step(grads, trainable, () => 1e-3);
  await Promise.all([...trainable.values()].map((v) => v.data()));
  const update = (performance.now() - t1) / 1000;
  for (const g of grads.values()) g.dispose();
  return { fwdBwd, update, loss };
}

async function measureModel(m: BenchModel): Promise<Record<string, unknown>> {
  const dir = writeBenchModel(m);
  process.env.LORAXS_CACHE_DIR = path.join(scratchDir, 'factor-cache');
  const started = await PyServer.start('train_ref');
  const py = 'server' in started ? started.server : null;
  if (!py) log(`train: PyTorch reference not run: ${(started as { why: string }).why}`);
  const rssStart = peakRssBytes();
  const session = await openModelSession({
    modelDir: dir, task: 'classification', numLabels: 2, seed: 0, dropout: null,
    adapter: { rank: m.rank, rankPattern: {}, alpha: m.rank, targets: m.targets, init: 'random', initStd: 1e-5,
      svd: { method: 'randomized', oversamples: 10, powerIters: 4 } },
  });
  const rssLoaded = peakRssBytes();
  const opt = createOptimizer('adamw');
  const BATCH = batchOf(m);
  const full = randomBatch(m, BATCH, new Rng(11));
  const microCount = BATCH / m.microBatch;
  const ckpt = m.checkpointing ?? false;
  const micro = Array.from({ length: microCount }, (_, i) => slice(full, i * m.microBatch, m.microBatch));
  const ref: Record<string, unknown> = { available: !!py, why: py ? null : (started as { why: string }).why };
  const torchTimes: number[] = [];
  let torchPeak: number | null = null;
  const torchStep = async (steps: number): Promise<void> => {
    if (!py) return;
    const r: Reply = await py.request({ cmd: 'step', input_ids: Array.from(full.inputIds), labels: Array.from(full.labels!), batch: BATCH, seq: SEQ, steps });
    if (r.error) throw new Error(`train_ref.py: ${r.error}`);
    torchTimes.push(...(r.times as number[]));
    torchPeak = r.peak_rss as number;
  };
  try {
    if (py) {
      const loaded = await py.request({ cmd: 'load', dir, targets: m.targets, rank: m.rank });
      if (loaded.error) throw new Error(`train_ref.py: ${loaded.error}`);
      Object.assign(ref, { load: loaded, matmul: await py.request({ cmd: 'matmul_peak' }) });
      await py.request({ cmd: 'step', input_ids: Array.from(full.inputIds), labels: Array.from(full.labels!), batch: BATCH, seq: SEQ, steps: 1 }); // warm-up
    }
    // Warm-up of both engine variants on one short sequence batch (allocations, kernel set-up): not timed.
    await engineStep(session, opt, [slice(full, 0, 1)], 'engine', ckpt);
    await engineStep(session, opt, [slice(full, 0, 1)], 'no-transpose', ckpt);
    log(`train ${m.name}: warmed up; tf.memory ${(tf.memory().numBytes / 2 ** 30).toFixed(2)} GiB in ${tf.memory().numTensors} tensors`);
    const timed = quick ? 1 : 1;
    const results: Record<Variant, { fwdBwd: number[]; update: number[] }> = { engine: { fwdBwd: [], update: [] }, 'no-transpose': { fwdBwd: [], update: [] } };
    for (let rep = 0; rep < timed; rep++) {
      for (const variant of ['engine', 'no-transpose'] as Variant[]) {
        const r = await engineStep(session, opt, micro.slice(0, TIMED_MICRO(m)), variant, ckpt);
        results[variant].fwdBwd.push(...r.fwdBwd);
        results[variant].update.push(r.update);
        log(`train ${m.name}: ${variant} micro-batches ${r.fwdBwd.map((x) => x.toFixed(1)).join(', ')} s`);
        await torchStep(1);
      }
    }
    // Native's own best: the faster variant, gradient checkpointing on, micro-batches as large as the
    // engine's planner allows under NATIVE_BEST_GB (no 4 GB heap), one micro-batch timed.
    let nativeBest: Record<string, unknown> | null = null;
    if (session.backendName === 'tensorflow') {
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      const variant: Variant = mean(results.engine.fwdBwd) / m.microBatch <= mean(results['no-transpose'].fwdBwd) / m.microBatch ? 'engine' : 'no-transpose';
      const plan = planMicroBatches({
        budgetBytes: NATIVE_BEST_GB * 1024 ** 3, weightBytes: float32Bytes(session.ckpt), config: session.ckpt.config, seqLen: SEQ,
        batchSize: BATCH, checkpointing: true, dropout: session.backbone.dropoutRates, causalLm: false,
      });
      let rows = plan.rows;
      while (BATCH % rows !== 0) rows--;
      const r = await engineStep(session, opt, [slice(full, 0, rows)], variant, true);
      const stepS = r.fwdBwd[0] * (BATCH / rows) + r.update;
      log(`train ${m.name}: native best (${variant}, checkpointing, micro-batch ${rows}) ${r.fwdBwd[0].toFixed(1)} s per micro-batch`);
      nativeBest = { variant, checkpointing: true, micro_batch: rows, micro_batch_s: r.fwdBwd, update_s: r.update, step_s: stepS, tokens_per_s: BATCH * SEQ / stepS };
      await torchStep(1);
    }
    const flops = flopsPerStep(m, BATCH, SEQ);
    const wasmGflops = await measureMatmulGflops(1024, 3);
    const tokens = BATCH * SEQ;
    const engineFigures = (v: Variant) => {
      const microS = results[v].fwdBwd.reduce((a, b) => a + b, 0) / results[v].fwdBwd.length;
      const stepS = microS * microCount + median(results[v].update);
      return {
        micro_batch: m.microBatch, micro_batches_per_step: microCount, micro_batch_s: results[v].fwdBwd, update_s: results[v].update,
        step_s: stepS, tokens_per_s: tokens / stepS, gflops: flops.step / stepS / 1e9,
      };
    };
    const torchStepS = torchTimes.length ? median(torchTimes) : null;
    const matmul = (ref.matmul as { gflops?: Record<string, number> } | undefined)?.gflops;
    return {
      model: m.name,
      config: m.config,
      targets: m.targets,
      rank: m.rank,
      batch: BATCH,
      seq: SEQ,
      tokens_per_step: tokens,
      flops_per_step: flops.step,
      engine: { ...engineFigures('engine'), peak_rss_bytes: peakRssBytes(), rss_after_load_bytes: rssLoaded, rss_before_load_bytes: rssStart },
      engine_no_transpose: engineFigures('no-transpose'),
      checkpointing: ckpt,
      native_best: nativeBest && { ...nativeBest, gflops: flops.step / (nativeBest.step_s as number) / 1e9 },
      torch: torchStepS === null ? ref : {
        step_s: torchStepS, steps_s: torchTimes, tokens_per_s: tokens / torchStepS, gflops: flops.step / torchStepS / 1e9,
        peak_rss_bytes: torchPeak, load: ref.load, threads: 2,
      },
      backend: (await initBackend()).name,
      tensorflow_version: (await initBackend()).tensorflowVersion ?? null,
      wasm_threads: (await initBackend()).threads ?? null,
      matmul_peak_gflops: { wasm_1024: wasmGflops, ...(matmul ?? {}) },
    };
  } finally {
    py?.close();
    opt.dispose();
    session.dispose();
  }
}

/**
 * The tfjs backends measured side by side: wasm always, native TensorFlow when `npm run setup:native` has
 * built it (LORAXS_BENCH_BACKENDS=wasm,tensorflow chooses). Each model is measured on each backend in turn
 * (interleaved, so background load affects both alike), each in its own process.
 */
function benchBackends(): string[] {
  const wanted = (process.env.LORAXS_BENCH_BACKENDS ?? 'wasm,tensorflow').split(',').map((x) => x.trim()).filter(Boolean);
  return wanted.filter((b) => b !== 'tensorflow' || findNativeInstalls().length > 0);
}

interface ModelResult {
  model: string;
  backend?: string;
  engine: { tokens_per_s: number; gflops: number };
  engine_no_transpose: { tokens_per_s: number; gflops: number };
  native_best?: { tokens_per_s: number; gflops: number } | null;
  torch?: { tokens_per_s?: number; gflops?: number };
  matmul_peak_gflops?: Record<string, number>;
}

/**
 * Per model: native ÷ wasm tokens/s on the same micro-batches (the issue's target: ≥ 2× on every model) and
 * best ÷ best, each engine figure ÷ PyTorch, and each as a fraction of the machine's matmul peak (the best
 * GEMM PyTorch measured in the same run).
 */
export function nativeVsWasm(models: ModelResult[]): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const name of [...new Set(models.map((m) => m.model))]) {
    const wasm = models.find((m) => m.model === name && (m.backend ?? 'wasm') === 'wasm');
    const native = models.find((m) => m.model === name && m.backend === 'tensorflow');
    if (!wasm || !native) continue;
    const same = native.engine.tokens_per_s / wasm.engine.tokens_per_s;
    const nativeBest = Math.max(native.engine.tokens_per_s, native.engine_no_transpose.tokens_per_s, native.native_best?.tokens_per_s ?? 0);
    const wasmBest = Math.max(wasm.engine.tokens_per_s, wasm.engine_no_transpose.tokens_per_s);
    const torchRuns = [wasm, native].map((m) => m.torch?.tokens_per_s).filter((x): x is number => typeof x === 'number');
    const torch = torchRuns.length ? torchRuns.reduce((a, b) => a + b, 0) / torchRuns.length : null;
    const peaks = [wasm, native].flatMap((m) => Object.entries(m.matmul_peak_gflops ?? {}).filter(([k]) => k !== 'wasm_1024').map(([, v]) => v));
    const peak = peaks.length ? Math.max(...peaks) : null;
    const torchGflops = [wasm, native].map((m) => m.torch?.gflops).find((x) => typeof x === 'number') ?? null;
    out.push({
      model: name, wasm_tokens_per_s: wasm.engine.tokens_per_s, native_tokens_per_s: native.engine.tokens_per_s,
      native_best_tokens_per_s: nativeBest, torch_tokens_per_s: torch,
      native_over_wasm_engine: same,
      native_over_wasm_no_transpose: native.engine_no_transpose.tokens_per_s / wasm.engine_no_transpose.tokens_per_s,
      native_best_over_wasm_best: nativeBest / wasmBest, target: 2, met: same >= 2,
      faster_variant: { wasm: wasm.engine.tokens_per_s >= wasm.engine_no_transpose.tokens_per_s ? 'engine' : 'no-transpose',
        native: native.engine.tokens_per_s >= native.engine_no_transpose.tokens_per_s ? 'engine' : 'no-transpose' },
      over_torch: torch ? { wasm: wasm.engine.tokens_per_s / torch, native: native.engine.tokens_per_s / torch, native_best: nativeBest / torch } : null,
      matmul_peak_gflops: peak,
      fraction_of_peak: peak ? {
        wasm: wasm.engine.gflops / peak, native: native.engine.gflops / peak,
        native_best: native.native_best ? native.native_best.gflops / peak : null, torch: torchGflops ? torchGflops / peak : null,
      } : null,
    });
  }
  return out;
}

async function main(): Promise<void> {
  const [which, backend] = process.argv.slice(2);
  if (which) {
    const m = MODELS.find((x) => x.name === which)!;
    const info = await initBackend(backend);
    if (backend && info.name !== backend) throw new Error(`backend ${backend} did not initialise: ${info.attempts.map((a) => `${a.candidate}: ${a.why}`).join('; ')}`);
    const result = await measureModel(m);
    fs.mkdirSync(partsDir, { recursive: true });
    fs.writeFileSync(path.join(partsDir, `train-${m.name}-${info.name}.json`), JSON.stringify(result, null, 2));
    return;
  }
  // Parent: write the checkpoints, then measure each model on each backend in a fresh process (per-model peak memory).
  const models: ModelResult[] = [];
  const failures: string[] = [];
  const only = process.env.LORAXS_BENCH_TRAIN_ONLY;
  const backends = benchBackends();
  if (!backends.includes('tensorflow')) log('train: native TensorFlow not set up (npm run setup:native); wasm only');
  for (const m of MODELS.filter((x) => !only || x.name.includes(only))) {
    writeBenchModel(m);
    for (const backend of backends) {
      const out = path.join(partsDir, `train-${m.name}-${backend}.json`);
      fs.rmSync(out, { force: true });
      const r = spawnSync(process.execPath, ['--enable-source-maps', __filename, m.name, backend], { stdio: 'inherit', env: { ...process.env, LORAXS_BACKEND: backend } });
      if (r.status === 0 && fs.existsSync(out)) models.push(JSON.parse(fs.readFileSync(out, 'utf8')));
      else failures.push(`${m.name} on ${backend}: exit ${r.status ?? r.signal}`);
    }
  }
  if (only) {
    // A partial run keeps the other models' figures from the last full run.
    const prev = path.join(partsDir, 'train.json');
    if (fs.existsSync(prev)) {
      const kept = (JSON.parse(fs.readFileSync(prev, 'utf8')).models as typeof models).filter((x) => !x.model.includes(only));
      models.unshift(...kept);
    }
  }
  const ratios = nativeVsWasm(models);
  const f = (x: unknown, d = 2) => (typeof x === 'number' ? x.toFixed(d) : 'n/a');
  const pct = (x: unknown) => (typeof x === 'number' ? `${(100 * x).toFixed(1)} %` : 'n/a');
  for (const q of ratios) {
    const t = q.over_torch as Record<string, number> | null;
    const p = q.fraction_of_peak as Record<string, number | null> | null;
    log(`train ${q.model}: tokens/s wasm ${f(q.wasm_tokens_per_s, 0)}, native ${f(q.native_tokens_per_s, 0)} (same micro-batches), ` +
      `native best ${f(q.native_best_tokens_per_s, 0)}, PyTorch ${f(q.torch_tokens_per_s, 0)}`);
    log(`train ${q.model}: CHECK native ÷ wasm ≥ 2×: ${f(q.native_over_wasm_engine)}× -> ${q.met ? 'met' : 'NOT met'}` +
      ` (no-transpose ${f(q.native_over_wasm_no_transpose)}×, best ÷ best ${f(q.native_best_over_wasm_best)}×; faster layout: ` +
      `wasm ${(q.faster_variant as Record<string, string>).wasm}, native ${(q.faster_variant as Record<string, string>).native})`);
    log(`train ${q.model}: ÷ PyTorch: wasm ${f(t?.wasm)}×, native ${f(t?.native)}×, native best ${f(t?.native_best)}×; ` +
      `of the matmul peak (${f(q.matmul_peak_gflops, 0)} GFLOP/s): wasm ${pct(p?.wasm)}, native ${pct(p?.native)}, native best ${pct(p?.native_best)}, PyTorch ${pct(p?.torch)}`);
  }
  writePart('train', { machine: machineInfo(), backends, models, native_vs_wasm: ratios, failures });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

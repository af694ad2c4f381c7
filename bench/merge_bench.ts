/**
 * Merge throughput and adapter size. A LoRA-XS adapter (rank 16 on query, value, attention.output.dense,
 * output.dense) of the BERT-base-shaped checkpoint is saved (adapter.safetensors vs 4 · Σ r² bytes), then
 * `loraxs merge` (engine/merge_run.ts: load, factors, W + ΔW, write a transformers folder) is timed and
 * compared, in GB/s of checkpoint bytes, with copying the same file: fs.copyFileSync, and read + write
 * through a Buffer (readFileSync + writeFileSync), interleaved (copy, merge, copy). That merge adds a
 * classification head, so every tensor is written anew. The same is measured for a causal-LM merge of the
 * small-Llama-shaped checkpoint (tied embeddings; rank 16 on all seven projections), whose output keeps the
 * source's tensors: the file is copied and the merged weights written over it (`causal_lm` in the part).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend } from '../sidecar/backend/choice';
import { openModelSession } from '../sidecar/session/model_session';
import { mergeRun } from '../sidecar/engine/merge_run';
import { ADAPTER_FILE } from '../sidecar/loraxs/adapter_files';
import type { RunConfig } from '../sidecar/config/types';
import { ensureDir, log, machineInfo, median, scratchDir, seconds, secondsAsync, writePart } from './common';
import { BERT_BASE, LLAMA_SMALL, writeBenchModel, type BenchModel } from './bench_models';

const LLAMA_SMALL_LM: BenchModel = {
  ...LLAMA_SMALL, name: 'llama-small-shaped-lm',
  config: { ...LLAMA_SMALL.config, architectures: ['LlamaForCausalLM'], tie_word_embeddings: true, id2label: undefined, label2id: undefined },
};

/** Saves an adapter of `m` and times `loraxs merge` of it against copying the checkpoint, interleaved. */
async function measureMerge(m: BenchModel, task: 'classification' | 'causal-lm'): Promise<Record<string, unknown>> {
  const modelDir = writeBenchModel(m);
  const work = ensureDir(path.join(scratchDir, `merge-${m.name}`));
  const adapterDir = path.join(work, 'adapter');
  const adapter = { rank: m.rank, rankPattern: {}, alpha: m.rank, targets: m.targets, init: 'svd' as const, initStd: 1e-5,
    svd: { method: 'randomized' as const, oversamples: 10, powerIters: 4 } };
  const numLabels = task === 'classification' ? 2 : 1;
  const session = await openModelSession({ modelDir, task, numLabels, seed: 0, dropout: null, adapter });
  const adapters = session.adapters!;
  const sumR2 = adapters.paramCount();
  adapters.save(adapterDir, { head: session.head, task, labelNames: null, numLabels, eval: null, modelDir });
  session.dispose();
  const adapterBytes = fs.statSync(path.join(adapterDir, ADAPTER_FILE)).size;
  const filesBytes = Object.fromEntries(fs.readdirSync(adapterDir).map((f) => [f, fs.statSync(path.join(adapterDir, f)).size]));

  const src = path.join(modelDir, 'model.safetensors');
  const bytes = fs.statSync(src).size;
  const copyFile = () => seconds(() => fs.copyFileSync(src, path.join(work, 'copy.safetensors'))).s;
  const bufferCopy = () => seconds(() => fs.writeFileSync(path.join(work, 'copy2.safetensors'), fs.readFileSync(src))).s;
  const config = { file: path.join(work, 'bench.loraxs.yaml'), model: modelDir } as unknown as RunConfig;
  const copyTimes: number[] = [];
  const bufferTimes: number[] = [];
  const mergeTimes: number[] = [];
  const reps = 5;
  for (let i = 0; i < reps; i++) {
    copyTimes.push(copyFile());
    bufferTimes.push(bufferCopy());
    const out = path.join(work, `merged-${i}`);
    fs.rmSync(out, { recursive: true, force: true });
    mergeTimes.push((await secondsAsync(() => mergeRun(config, adapterDir, out))).s);
    fs.rmSync(out, { recursive: true, force: true });
    log(`merge ${m.name}: rep ${i + 1}/${reps}: merge ${mergeTimes[i].toFixed(2)} s, copyFile ${copyTimes[i].toFixed(2)} s, buffer ${bufferTimes[i].toFixed(2)} s`);
  }
  copyTimes.push(copyFile());
  bufferTimes.push(bufferCopy());
  for (const f of ['copy.safetensors', 'copy2.safetensors']) fs.rmSync(path.join(work, f), { force: true });
  const gbps = (s: number) => bytes / s / 1e9;
  return {
    model: m.name,
    task,
    checkpoint_bytes: bytes,
    merged_modules: adapters.targets.length,
    merge_s: mergeTimes,
    copy_file_s: copyTimes,
    buffer_copy_s: bufferTimes,
    merge_gbps: gbps(median(mergeTimes)),
    copy_file_gbps: gbps(median(copyTimes)),
    buffer_copy_gbps: gbps(median(bufferTimes)),
    adapter: {
      modules: adapters.targets.length,
      sum_r2: sumR2,
      adapter_safetensors_bytes: adapterBytes,
      bound_bytes: 4 * sumR2 + 2048,
      overhead_bytes: adapterBytes - 4 * sumR2,
      folder_files_bytes: filesBytes,
    },
  };
}

async function main(): Promise<void> {
  const backend = await initBackend();
  process.env.LORAXS_CACHE_DIR = path.join(scratchDir, 'factor-cache');
  const bert = await measureMerge(BERT_BASE, 'classification');
  const lm = await measureMerge(LLAMA_SMALL_LM, 'causal-lm');
  writePart('merge', {
    backend: backend.name,
    machine: machineInfo(),
    ...bert,
    note: 'merge = loraxs merge end to end (read checkpoint, factors from the cache, W + ΔW on the backend, write model.safetensors + config + tokenizer files); factors were computed once before timing; a classification head is added, so every tensor is written anew',
    causal_lm: { ...lm, note: 'the merged model keeps the source file\'s tensors: the file is copied (fs.copyFile) and the merged weights written over their ranges' },
  });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

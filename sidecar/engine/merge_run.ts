/**
 * `loraxs merge`: W' = W + (α/r) · U_r R Σ_r V_rᵀ for every adapted module, written with the task head as
 * a new Hugging Face folder that transformers' Auto classes load (weights in the source dtype, sharded
 * beyond 2 GB, tokenizer files copied). Only the adapted weights go through the backend; every other
 * tensor's bytes are copied from the source file as they are stored. A model whose architecture the engine
 * cannot hold is merged by trainer/adapter_tools.py (engine/trainer_tools.ts).
 */
import * as path from 'node:path';
import * as tf from '../backend/tf';
import { initBackend } from '../backend/choice';
import type { RunConfig } from '../config/types';
import { openCheckpoint, loadWeights, checkpointFingerprint, parameterNames, type Checkpoint } from '../io/model_folder';
import { readTensorBytes, type SafetensorsHeader } from '../io/safetensors';
import { warnOtherCommit } from '../loraxs/adapter_set';
import { loadAdapter } from '../loraxs/adapter_files';
import { adapterFactors, checkBaseModel } from '../loraxs/factor_cache';
import { mergeWeights, type MergeableModule } from '../loraxs/merge';
import { uploadFactors } from '../loraxs/adapted_context';
import { writeHfModel, canPatchSource, configForHead, type HfDtype, type TensorSource } from '../loraxs/hf_model_writer';
import type { FolderWriteOptions } from '../loraxs/folder_swap';
import type { EngineEvents } from '../records';
import { engineCannotHold } from './model_support';
import { runTrainerTool } from './trainer_tools';

/**
 * The checkpoint's weight file when it is one file whose tensors keep their names (no shards, no renamed
 * keys): a merged model holding exactly its tensors is then a copy with the merged weights written over it.
 */
function singleSourceFile(ckpt: Checkpoint): SafetensorsHeader | false {
  if (ckpt.files.length !== 1) return false;
  for (const [name, loc] of ckpt.tensors) if (loc.sourceName !== name) return false;
  return ckpt.tensors.values().next().value?.header ?? false;
}

/** Tensors of other task heads that the merged model's task class would not load. */
function belongsToOtherHead(name: string, task: RunConfig['task']): boolean {
  if (name.startsWith('cls.') || (name.startsWith('lm_head.') && task !== 'causal-lm')) return true;
  return task === 'causal-lm' && (name.startsWith('classifier.') || name.startsWith('score.'));
}

/**
 * Merges and writes `outDir` atomically with its marker. `write`: the job runner adds
 * `onlyReplaceMarked`, so a folder LoRA-XS did not write is never replaced (its pre-flight, in
 * engine/jobs.ts, has refused it already, before anything was loaded).
 */
export async function mergeRun(config: RunConfig, adapterDir: string, outDir: string, events?: EngineEvents,
  write: FolderWriteOptions = { writer: 'merge' }): Promise<string> {
  // An architecture the engine cannot hold (an adapter from `loraxs launch`, factors inside): the trainer's Python merges.
  if (engineCannotHold(config.model)) return runTrainerTool('merge', { adapterDir, modelDir: config.model, outDir }, config, events, write);
  await initBackend();
  const snapshot = loadAdapter(adapterDir);
  const saved = snapshot.config;
  const ckpt = openCheckpoint(config.model);
  warnOtherCommit(saved, config.model, events);
  checkBaseModel(adapterDir, snapshot, checkpointFingerprint(ckpt), config.model);
  const weights = loadWeights(ckpt, saved.modules.map((m) => `${m.name}.weight`));
  const modules: MergeableModule[] = [];
  let merged: ReturnType<typeof mergeWeights> | undefined;
  try {
    const factors = adapterFactors(adapterDir, snapshot, weights, { onModule: (p) => events?.progress?.('factors', p.index + 1, p.total) });
    for (const m of saved.modules) {
      modules.push({ name: m.name, ...uploadFactors(factors.get(m.name)!, saved.alpha), R: tf.tensor2d(snapshot.R.get(m.name)!, [m.rank, m.rank]) });
    }
    merged = mergeWeights(weights, modules, adapterDir);
    const cfg = ckpt.config;
    const dtype: HfDtype = cfg.dtype === 'float16' || cfg.dtype === 'bfloat16' ? cfg.dtype : 'float32';
    const tensors = new Map<string, TensorSource>();
    for (const name of parameterNames(ckpt)) {
      if (belongsToOtherHead(name, saved.task) || snapshot.head.has(name)) continue;
      const mergedTensor = merged.weights.get(name);
      const loc = ckpt.tensors.get(name)!;
      tensors.set(name, mergedTensor ?? { shape: loc.entry.shape, dtype: loc.entry.dtype, read: () => readTensorBytes(loc.header, loc.sourceName) });
    }
    for (const [name, h] of snapshot.head) tensors.set(name, { shape: h.shape, data: h.data });
    const source = singleSourceFile(ckpt);
    events?.log?.(`merging ${merged.mergedNames.length} modules into ${outDir} (${dtype})${source && canPatchSource(source, tensors, dtype)
      ? `: a copy of ${path.basename(source.file)} with the merged weights written over theirs` : ''}`);
    writeHfModel(outDir, {
      config: configForHead(cfg.raw, cfg.modelType, saved.task, saved.id2label, saved.numLabels),
      tensors,
      dtype,
      copyFrom: config.model,
      chatTemplate: snapshot.chatTemplate,
      write,
      source,
    });
  } finally {
    for (const key of merged?.mergedNames ?? []) merged!.weights.get(key)?.dispose();
    for (const m of modules) [m.A, m.B, m.R].forEach((t) => t.dispose());
    for (const t of weights.values()) t.dispose();
  }
  return path.resolve(outDir);
}

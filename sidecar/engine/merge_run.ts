/**
 * `loraxs merge`: W' = W + (α/r) · U_r R Σ_r V_rᵀ for every adapted module, written with the task head as
 * a new Hugging Face folder that transformers' Auto classes load (weights in the source dtype, sharded
 * beyond 2 GB, tokenizer files copied).
 */
import * as path from 'node:path';
import * as tf from '../tf';
import type { RunConfig } from '../config/types';
import { readAdapterConfig } from '../loraxs/adapter_files';
import { mergeWeights } from '../loraxs/merge';
import { writeHfModel, configForHead, type HfDtype, type TensorSource } from '../loraxs/hf_model_writer';
import { openModelSession } from './model_session';
import type { EngineEvents } from './events';

/** Tensors of other task heads that the merged model's task class would not load. */
function belongsToOtherHead(name: string, task: RunConfig['task']): boolean {
  if (name.startsWith('cls.') || name.startsWith('lm_head.') && task !== 'causal-lm') return true;
  return task === 'causal-lm' && (name.startsWith('classifier.') || name.startsWith('score.'));
}

export async function mergeRun(config: RunConfig, adapterDir: string, outDir: string, events?: EngineEvents): Promise<string> {
  const saved = readAdapterConfig(adapterDir).config;
  const session = await openModelSession({
    modelDir: config.model, task: saved.task, numLabels: saved.numLabels ?? 1, adapter: null, seed: saved.seed,
    dropout: null, adapterDir, events, configFile: config.file,
  });
  try {
    const adapters = session.adapters!;
    const modules = [...adapters.modules.values()].map((m) => ({ name: m.name, scale: m.scale, A: m.A, B: m.B, R: m.R as tf.Tensor2D }));
    const merged = mergeWeights(session.backbone.weights, modules);
    try {
      const tensors = new Map<string, TensorSource>();
      for (const [name, t] of merged.weights) if (!belongsToOtherHead(name, saved.task)) tensors.set(name, t);
      for (const [name, v] of session.head.trainable) tensors.set(name, v);
      const cfg = session.ckpt.config;
      const dtype: HfDtype = cfg.dtype === 'float16' || cfg.dtype === 'bfloat16' ? cfg.dtype : 'float32';
      events?.log?.(`merging ${merged.mergedNames.length} modules into ${outDir} (${dtype})`);
      writeHfModel(outDir, {
        config: configForHead(cfg.raw, cfg.modelType, saved.task, saved.id2label, saved.numLabels),
        tensors,
        dtype,
        copyFrom: config.model,
      });
    } finally {
      for (const key of merged.mergedNames) merged.weights.get(key)?.dispose();
    }
  } finally {
    session.dispose();
  }
  return path.resolve(outDir);
}

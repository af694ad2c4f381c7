/**
 * A model ready for a task: the checkpoint opened and checked against the backend, its tokenizer, the
 * backbone, the task head and the LoRA-XS adapters (factors from the cache or a fresh SVD, R from init or
 * from a saved adapter). Training, evaluation, prediction, merging and generation all start here.
 */
import * as tf from '../backend/tf';
import { initBackend } from '../backend/choice';
import { memoryBudget, type MemoryBudget } from '../backend/memory_budget';
import { openCheckpoint, loadWeights, assertFitsBackend, checkpointFingerprint, type Checkpoint } from '../io/model_folder';
import { loadTokenizer, type TextTokenizer } from '../io/tokenizer';
import { createBackbone, type TransformerBackbone } from '../models/registry';
import { createHead, sentenceEmbedding, type HeadTask, type TaskHead, type PairMode, type TargetScaling } from '../models/heads';
import { taskLogits } from '../models/task_model';
import { plainContext } from '../models/plain_context';
import type { ForwardInputs, KvCache } from '../models/types';
import type { AdapterConfig } from '../config/types';
import { Rng } from '../rng';
import { buildAdapters, type AdapterSet } from '../loraxs/adapter_set';
import type { EngineEvents } from '../records';

export interface SessionOptions {
  modelDir: string;
  task: HeadTask;
  /** Classification: number of classes; regression: 1; causal LM: ignored. */
  numLabels: number;
  /** null: no adapter (the base model, e.g. `generate` without --adapter), unless adapterDir is given. */
  adapter: AdapterConfig | null;
  seed: number;
  dropout: number | null;
  /** A saved adapter folder whose R (and head) replace the fresh init. */
  adapterDir?: string;
  events?: EngineEvents;
  /** The config file, named in errors about targets and ranks. */
  configFile?: string;
  /** The model's tokenizer when the caller already loaded it (to read data first). */
  tokenizer?: TextTokenizer;
  /** Sentence pairs: `cross` (default) or `bi` (session/pair_mode.ts `pairModeOf`; data must be read the same way). */
  pairMode?: PairMode;
  /** Regression: the fresh head's target scaling (session/pair_mode.ts `targetScalingOf`). */
  targetScaling?: TargetScaling;
  /** Training: recompute each block's activations in the backward pass (`compute.gradient_checkpointing`). */
  gradientCheckpointing?: boolean;
  /** `compute.memory_budget_gb` (backend/memory_budget.ts: else $LORAXS_MEMORY_BUDGET_GB, else the machine's). */
  memoryBudgetGb?: number;
}

export interface ModelSession {
  ckpt: Checkpoint;
  fingerprint: string;
  tokenizer: TextTokenizer;
  backbone: TransformerBackbone;
  head: TaskHead;
  adapters: AdapterSet | null;
  backendName: string;
  /** The memory budget the model was checked against (and training sizes micro-batches from). */
  memory: MemoryBudget;
  /** Every trainable variable by name: `<module>.R` for adapters, head parameter names for the head. */
  trainable(): Map<string, tf.Variable>;
  /** Task logits: classification/regression (B, numLabels), causal LM (B, T, V). */
  logits(inputs: ForwardInputs, training: boolean, rng?: Rng): tf.Tensor;
  /** Evaluation: one embedding per row (N, H), as bi pair mode compares them (models/heads.ts `sentenceEmbedding`). */
  embeddings(inputs: ForwardInputs): tf.Tensor2D;
  /**
   * Causal LM, evaluation: an empty KV cache, and the logits (B, t, V) of t new tokens that follow the
   * cache's positions (the cache grows by t). Null for models without incremental decoding.
   */
  kvCache(): KvCache | null;
  logitsCached(inputIds: tf.Tensor2D, cache: KvCache): tf.Tensor;
  dispose(): void;
}

export async function openModelSession(opts: SessionOptions): Promise<ModelSession> {
  const backend = await initBackend();
  if (backend.warning) opts.events?.log?.(`warning: ${backend.warning}`);
  const ckpt = openCheckpoint(opts.modelDir);
  const memory = memoryBudget(opts.memoryBudgetGb);
  assertFitsBackend(ckpt, backend.memoryLimitBytes, backend.name, memory);
  // The tokenizer loads on first use: merging and exporting need none.
  let tokenizer = opts.tokenizer;
  opts.events?.log?.(`loading ${opts.modelDir} (${ckpt.config.modelType}, ${ckpt.config.numLayers} layers) on ${backend.name}`);
  const weights = loadWeights(ckpt);
  const backbone = createBackbone(ckpt.config, weights, { dropout: opts.dropout, source: opts.modelDir });
  const fingerprint = checkpointFingerprint(ckpt);
  let adapters: AdapterSet | null = null;
  let head: TaskHead | undefined;
  try {
    adapters = opts.adapter || opts.adapterDir
      ? buildAdapters({ backbone, modelDir: opts.modelDir, fingerprint, config: opts.adapter, seed: opts.seed, adapterDir: opts.adapterDir, events: opts.events, configFile: opts.configFile })
      : null;
    head = createHead(backbone, opts.task, opts.numLabels, {
      seed: opts.seed, checkpointHead: adapters?.savedHead ?? undefined, pairMode: opts.pairMode, targetScaling: opts.targetScaling,
    });
  } catch (e) {
    adapters?.dispose();
    for (const t of weights.values()) t.dispose();
    throw e;
  }
  const theHead = head;
  return {
    ckpt,
    fingerprint,
    get tokenizer() {
      tokenizer ??= loadTokenizer(opts.modelDir, ckpt.config);
      return tokenizer;
    },
    backbone,
    head: theHead,
    adapters,
    backendName: backend.name,
    memory: memory.bytes < backend.memoryLimitBytes ? memory : { bytes: backend.memoryLimitBytes, source: `the ${backend.name} backend's heap` },
    trainable() {
      const all = new Map<string, tf.Variable>();
      if (adapters) for (const [name, m] of adapters.modules) all.set(`${name}.R`, m.R);
      for (const [name, v] of theHead.trainable) all.set(name, v);
      return all;
    },
    logits(inputs, training, rng) {
      const ctxOpts = { training, rng, extra: theHead.trainable as Map<string, tf.Tensor>, gradientCheckpointing: opts.gradientCheckpointing };
      const ctx = adapters ? adapters.context(weights, ctxOpts) : plainContext(weights, ctxOpts);
      return taskLogits(backbone, theHead, inputs, ctx);
    },
    embeddings(inputs) {
      const ctxOpts = { training: false, extra: theHead.trainable as Map<string, tf.Tensor> };
      const ctx = adapters ? adapters.context(weights, ctxOpts) : plainContext(weights, ctxOpts);
      return tf.tidy(() => sentenceEmbedding(backbone, backbone.forward(inputs, ctx), inputs, ctx));
    },
    kvCache() {
      return backbone.createKvCache?.() ?? null;
    },
    logitsCached(inputIds, cache) {
      if (!backbone.forwardCached) throw new Error(`internal error: ${ckpt.config.modelType} has no KV cache`);
      const ctxOpts = { training: false, extra: theHead.trainable as Map<string, tf.Tensor> };
      const ctx = adapters ? adapters.context(weights, ctxOpts) : plainContext(weights, ctxOpts);
      return tf.tidy(() => {
        const hidden = backbone.forwardCached!(inputIds, cache, ctx);
        return theHead.apply(hidden, { inputIds, attentionMask: tf.onesLike(inputIds) as tf.Tensor2D }, ctx);
      });
    },
    dispose() {
      theHead.dispose();
      adapters?.dispose();
      for (const t of weights.values()) t.dispose();
    },
  };
}

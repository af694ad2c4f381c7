/**
 * Micro-batches sized from the memory budget: a batch whose activations would not fit in what the budget
 * leaves after the weights is run as several micro-batches (rows split in order, gradients accumulated,
 * each micro-batch's loss weighted by its share of the batch), so the update is the batch's update.
 *
 * What the autodiff tape keeps, float32. tfjs saves a copy of every tensor a gradient needs (both inputs
 * of every add, multiply and product, reshape inputs, softmax outputs, ...; the wasm and native backends
 * copy on save), including each frozen weight a product reads and the embedding matrix a gather reads.
 * Fitted to the bytes bench/memory_bench.ts measures (tf.memory() at the end of the forward pass and
 * tf.profile's peak), which it prints beside these estimates:
 *   plain tape, per token per layer:  24·H + 15·(Hq + 2·Hkv) + 10·I + 8·heads·T  (T keys per query), plus
 *                                     a copy of every weight per micro-batch
 *   checkpointed, per token per layer: H + (decoders) groups·T (the block input and its mask), plus the
 *                                     embedding matrix and, while one block is recomputed, that block's
 *                                     plain activations and weight copies
 *   peak over the backward pass: about 2.5× what the plain tape keeps; kept + 2.5 blocks when checkpointed
 *   head: causal LM 3·V per token (logits, log-softmax and its gradient); other heads ~0
 * The split depends only on the config, the model and the budget (never on measurements of this run), so a
 * resumed run splits (and draws dropout masks) exactly as the uninterrupted one did.
 */
import type { ModelConfig } from '../models/types';
import type { DropoutRates } from '../models/backbone_options';

const F32 = 4;

export interface ActivationEstimate {
  /** Bytes per token per layer the tape keeps (checkpointed: the block input only). */
  perTokenPerLayer: number;
  /** Bytes per token at the peak of a step (every layer, the recomputed block, the head). */
  perToken: number;
  /** Bytes per micro-batch whatever its size: the weight copies the tape keeps. */
  perMicroBatch: number;
}

/** Bytes per token per layer of one block's activations on the plain tape (sequence length `seqLen`). */
export function plainBlockBytes(config: ModelConfig, seqLen: number, dropout: DropoutRates): number {
  const { hiddenSize: h, intermediateSize: i, numHeads, numKvHeads, headDim } = config;
  const scores = numHeads * seqLen;
  const qkv = numHeads * headDim + 2 * numKvHeads * headDim;
  const dropped = (dropout.hidden > 0 ? 6 * h : 0) + (dropout.attention > 0 ? 3 * scores : 0);
  return F32 * (24 * h + 15 * qkv + 10 * i + 8 * scores + dropped);
}

/**
 * Activation bytes of one training step: per token (B·T tokens of sequence length T) and per micro-batch.
 * @param weightBytes float32 bytes of all weights (the plain tape copies each once per micro-batch)
 * @param causalLm the head computes logits over the vocabulary at every position
 */
export function activationBytes(config: ModelConfig, seqLen: number, checkpointing: boolean, dropout: DropoutRates, causalLm: boolean,
  weightBytes = 0): ActivationEstimate {
  const block = plainBlockBytes(config, seqLen, dropout);
  const head = causalLm ? 3 * F32 * config.vocabSize : 0;
  if (!checkpointing) return { perTokenPerLayer: block, perToken: 2.5 * config.numLayers * block + head, perMicroBatch: weightBytes };
  const groups = config.kind === 'decoder' ? config.numHeads / config.numKvHeads : 0;
  const kept = F32 * (config.hiddenSize + groups * seqLen);
  const embedding = F32 * config.vocabSize * config.hiddenSize;
  return {
    perTokenPerLayer: kept, perToken: config.numLayers * kept + 2.5 * block + head,
    perMicroBatch: embedding + weightBytes / config.numLayers,
  };
}

export interface MicroBatchPlan {
  /** Rows (examples) per micro-batch; the batch size when a whole batch fits. */
  rows: number;
  /** Bytes the budget leaves for activations after the weights and the runtime. */
  activationBudget: number;
  estimate: ActivationEstimate;
  /** True when even one row exceeds the activation budget (the run may still fit: the estimate is conservative). */
  overBudget: boolean;
}

/** What the runtime (Node, the backend's own buffers, the optimizer) takes beside weights and activations. */
export const RUNTIME_RESERVE = 0.75 * 1024 ** 3;

/**
 * @param budgetBytes the memory budget (backend/memory_budget.ts)
 * @param weightBytes float32 bytes of the model's weights
 * @param seqLen the longest sequence a batch can hold (training.max_length)
 * @param rowsPerExample 2 in bi pair mode (each text is a row), else 1
 */
export function planMicroBatches(opts: {
  budgetBytes: number; weightBytes: number; config: ModelConfig; seqLen: number; batchSize: number; checkpointing: boolean;
  dropout: DropoutRates; causalLm: boolean; rowsPerExample?: number;
  /** Bytes one product may hold besides its operands (wasmTransientBytes on wasm). */
  transientBytes?: number;
}): MicroBatchPlan {
  const estimate = activationBytes(opts.config, opts.seqLen, opts.checkpointing, opts.dropout, opts.causalLm, opts.weightBytes);
  const activationBudget = Math.max(0, opts.budgetBytes - opts.weightBytes - RUNTIME_RESERVE - estimate.perMicroBatch - (opts.transientBytes ?? 0));
  const perExample = estimate.perToken * opts.seqLen * (opts.rowsPerExample ?? 1);
  const fit = Math.floor(activationBudget / perExample);
  return { rows: Math.max(1, Math.min(opts.batchSize, fit)), activationBudget, estimate, overBudget: fit < 1 };
}

/**
 * The wasm backend's transient bytes: a product with a transposed weight runs on a transposed copy, which
 * XNNPACK packs into another copy, so the largest weight is held twice more while it is multiplied (a
 * tied output matrix in a causal LM's logits). When the heap cannot hold them, tfjs-wasm only warns ("XNN
 * status ... 6") and leaves the product unwritten, so the plan must leave room for them.
 */
export function wasmTransientBytes(largestWeightBytes: number): number {
  return 2 * largestWeightBytes;
}

/** The batch's example indices cut into consecutive micro-batches of at most `rows`. */
export function splitIndices(indices: number[], rows: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < indices.length; i += rows) out.push(indices.slice(i, i + rows));
  return out;
}

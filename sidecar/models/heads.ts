/**
 * Task heads with the parameter names of transformers' task classes:
 * - BERT: pooler (`bert.pooler.dense` + tanh on the first token, frozen from the checkpoint and run through
 *   ctx.linear, like any backbone linear layer) + dropout + `classifier` (hidden -> numLabels, trainable);
 * - RoBERTa: token 0 (<s>) -> dropout -> `classifier.dense` + tanh -> dropout -> `classifier.out_proj`
 *   (both trainable);
 * - use_lite: the sentence embedding (mean over tokens, frozen `use_lite.pooler.dense` run through ctx.linear,
 *   tanh, L2 normalisation: exactly the encoder's output) + dropout + `classifier` (hidden -> numLabels, trainable);
 * - decoders: `score` (hidden -> numLabels, no bias, trainable) at the last non-padding token (sum(mask) - 1,
 *   right padding);
 * - causal LM: `lm_head` (frozen; embed_tokens when the embeddings are tied).
 * Regression is classification with one output (the trainer applies MSE). New parameters are initialised
 * as transformers' _init_weights does: N(0, initializer_range²) weights, zero biases, from Rng(seed).
 *
 * Regression targets (cross mode): the head predicts mean + std · (its linear output), with the training
 * targets' mean and standard deviation, so a fresh head starts at the mean with unit-scale outputs. The
 * saved head is in label units (the affine map folded into the last linear layer), so a saved or merged
 * head predicts labels directly.
 *
 * Pair mode `bi` (Sentence-BERT): a batch holds 2B rows, the first texts then the second texts; each
 * is embedded alone (use_lite: the encoder's sentence embedding; BERT/RoBERTa: mean over tokens;
 * decoders: the last token), u = rows 0..B-1, v = rows B..2B-1. Classification reads (u, v, |u−v|, u∘v)
 * into `classifier` (4H -> numLabels); regression predicts
 * `pair.offset + pair.scale · Σ_k pair.weight_k û_k v̂_k + pair.bias` (a weighted cosine of the unit
 * embeddings), trained against the label in label units with MSE. offset and scale are constants: the
 * training labels' minimum and range (STS-B: 0 and 5, the label/5 of sentence-transformers'
 * CosineSimilarityLoss); the H weights start at 1 and the bias at 0, so a fresh head predicts
 * offset + scale · cos(u, v) exactly, and training reweights the embedding's dimensions (H + 1 numbers).
 * All four are saved with the head (and in a merged model's weights, which a later session reads back).
 */
import * as tf from '../backend/tf';
import { check, LoraxsError } from '../errors';
import { Rng } from '../rng';
import { dropoutRatesOf } from './backbone_options';
import { linearForward } from './plain_context';
import type { Backbone, ForwardContext, ForwardInputs } from './types';
import { useLitePooledEmbedding } from './use_lite';

export type HeadTask = 'classification' | 'regression' | 'causal-lm';
export type PairMode = 'cross' | 'bi';

/** Regression outputs in label units: offset + scale · raw. */
export interface TargetScaling {
  offset: number;
  scale: number;
}

export interface TaskHead {
  task: HeadTask;
  /** Outputs per example (classification/regression) or the vocabulary size (causal LM). */
  numLabels: number;
  /** Trainable parameters by canonical name (`classifier.weight`, `score.weight`, ...); empty for causal LM. */
  trainable: Map<string, tf.Variable>;
  /** (B, T, H) -> classification/regression (B, numLabels); causal-lm (B, T, V) */
  apply(hidden: tf.Tensor3D, inputs: ForwardInputs, ctx: ForwardContext): tf.Tensor;
  /** `bi`: the batch's rows are the first texts then the second texts (see above); else `cross`. */
  pairMode: PairMode;
  /** The tensors an adapter folder saves for this head (regression folded into label units; bi constants). */
  savedTensors(): Map<string, { shape: number[]; data: Float32Array }>;
  dispose(): void;
}

export interface HeadOptions {
  /** Seed of the Rng that initialises new head parameters. */
  seed: number;
  /** Head tensors found in the checkpoint (`classifier.weight`, `score.weight`, ...); used when their shape fits. */
  checkpointHead?: Map<string, tf.Tensor>;
  /** Pairs: `cross` (one joined sequence, the default) or `bi` (each text embedded alone). */
  pairMode?: PairMode;
  /**
   * Regression: cross mode, the training targets' mean (offset) and standard deviation (scale); bi mode,
   * the labels' minimum (offset) and range (scale) that cos = 0 and cos = 1 map to. Ignored when the
   * checkpoint head is loaded (its saved head already predicts label units). Default {0, 1}.
   */
  targetScaling?: TargetScaling;
}

/** Names of the constants a bi-mode regression head saves. */
export const PAIR_OFFSET = 'pair.offset';
export const PAIR_SCALE = 'pair.scale';
/** The bi-mode regression head's trainable weighted cosine: per-dimension weights (H) and a bias (1). */
export const PAIR_WEIGHT = 'pair.weight';
export const PAIR_BIAS = 'pair.bias';

/** Builds the head's trainable parameters: from the checkpoint when it holds them with the right shape, else new. */
class ParameterMaker {
  readonly trainable = new Map<string, tf.Variable>();
  /** Parameters whose value came from the checkpoint (not freshly initialised). */
  readonly loaded = new Set<string>();
  private readonly rng: Rng;

  constructor(private readonly backbone: Backbone, private readonly opts: HeadOptions, private readonly std: number) {
    this.rng = new Rng(opts.seed);
  }

  /** A Linear layer `name` (out × in), with a bias when `bias`. */
  linear(name: string, outFeatures: number, inFeatures: number, bias: boolean): void {
    this.parameter(`${name}.weight`, [outFeatures, inFeatures], 'normal');
    if (bias) this.parameter(`${name}.bias`, [outFeatures], 'zeros');
  }

  /** A vector `name` of `size` numbers, starting at `init`. */
  vector(name: string, size: number, init: 'ones' | 'zeros'): void {
    this.parameter(name, [size], init);
  }

  private parameter(name: string, shape: number[], init: 'normal' | 'zeros' | 'ones'): void {
    const saved = this.opts.checkpointHead?.get(name);
    const found = saved ?? this.backbone.weights.get(name);
    const size = shape.reduce((a, b) => a * b, 1);
    const fits = found && found.shape.length === shape.length && found.shape.every((d, i) => d === shape[i]);
    if (saved && !fits) {
      throw new LoraxsError(`the adapter's head tensor ${name} has shape [${saved.shape.join(', ')}], this config needs [${shape.join(', ')}]` +
        ' (was it trained with another data.pair_mode or label set?)', { file: 'head.safetensors', detail: 'data.pair_mode' });
    }
    if (fits) this.loaded.add(name);
    const value = fits
      ? tf.cast(found, 'float32')
      : init === 'zeros' ? tf.zeros(shape) : init === 'ones' ? tf.ones(shape) : tf.tensor(this.rng.normalArray(size, this.std), shape);
    this.trainable.set(name, tf.variable(value, true));
    value.dispose();
  }

  get(name: string): tf.Variable {
    const v = this.trainable.get(name);
    if (!v) throw new Error(`internal error: head parameter ${name} was not created`);
    return v;
  }
}

/**
 * Row `index[b]` of each sequence: (B, T, H), (B) int32 -> (B, H). A one-hot matrix product rather than a
 * gather, because gather's gradient (UnsortedSegmentSum) has no wasm kernel.
 */
function tokenAt(hidden: tf.Tensor3D, index: tf.Tensor1D): tf.Tensor2D {
  return tf.tidy(() => {
    const [b, t, h] = hidden.shape;
    // oneHot as int32, then cast: the wasm kernel writes integer bits into a float32 oneHot (tfjs 4.22).
    const select = tf.reshape(tf.cast(tf.oneHot(tf.cast(index, 'int32'), t), 'float32'), [b, 1, t]);
    return tf.reshape(tf.matMul(select, hidden), [b, h]) as tf.Tensor2D;
  });
}

/** The first token of each sequence: (B, T, H) -> (B, H). */
function firstToken(hidden: tf.Tensor3D): tf.Tensor2D {
  const [b, , h] = hidden.shape;
  return tf.reshape(tf.slice(hidden, [0, 0, 0], [b, 1, h]), [b, h]) as tf.Tensor2D;
}

export function createHead(backbone: Backbone, task: HeadTask, numLabels: number, opts: HeadOptions): TaskHead {
  const config = backbone.config;
  const h = config.hiddenSize;
  if (task === 'causal-lm') return causalLmHead(backbone, opts);
  check(Number.isInteger(numLabels) && numLabels >= 1, () => `the number of labels must be a positive integer, got ${numLabels}`);
  check(task !== 'regression' || numLabels === 1, () => `regression has one output, got numLabels ${numLabels}`);
  const std = typeof config.raw.initializer_range === 'number' ? config.raw.initializer_range : 0.02;
  const params = new ParameterMaker(backbone, opts, std);
  const rates = dropoutRatesOf(backbone);
  const drop = (x: tf.Tensor, ctx: ForwardContext) => (ctx.training && rates.classifier > 0 ? ctx.dropout(x, rates.classifier) : x);
  const pairMode: PairMode = opts.pairMode ?? 'cross';
  const saved = opts.checkpointHead;
  const savedPair = saved?.has(PAIR_OFFSET) || saved?.has(PAIR_SCALE);
  if (saved && saved.size > 0) {
    const wantsPair = pairMode === 'bi' && task === 'regression';
    if (savedPair !== wantsPair) {
      throw new LoraxsError(`the adapter's head was trained with data.pair_mode ${savedPair ? 'bi' : 'cross'} (${task}), this config uses ${pairMode}`, { file: 'head.safetensors', detail: 'data.pair_mode' });
    }
  }
  let apply: TaskHead['apply'];
  /** The last linear layer (regression: folded with the target scaling when saved). */
  let lastLinear: string | null = null;

  /** Constants saved beside the trainable tensors (bi regression: its target scaling). */
  const constants = new Map<string, { shape: number[]; data: Float32Array }>();

  if (pairMode === 'bi' && task === 'regression') {
    const scalar = (name: string, fallback: number): number => {
      const t = saved?.get(name) ?? backbone.weights.get(name); // an adapter's head, or a merged model's
      return t ? t.dataSync()[0] : fallback;
    };
    const offset = scalar(PAIR_OFFSET, opts.targetScaling?.offset ?? 0);
    const scale = scalar(PAIR_SCALE, opts.targetScaling?.scale ?? 1);
    constants.set(PAIR_OFFSET, { shape: [1], data: Float32Array.of(offset) });
    constants.set(PAIR_SCALE, { shape: [1], data: Float32Array.of(scale) });
    // The weighted cosine starts as the cosine (weights 1, bias 0); a saved head (or a merged model) has its own.
    params.vector(PAIR_WEIGHT, h, 'ones');
    params.vector(PAIR_BIAS, 1, 'zeros');
    // use_lite's sentence embedding is L2-normalised already (the package's embed()).
    const unit = config.modelType === 'use_lite';
    apply = (hidden, inputs, ctx) => tf.tidy(() => {
      const [u, v] = splitPair(sentenceEmbedding(backbone, hidden, inputs, ctx));
      const similarity = weightedCosineRows(u, v, params.get(PAIR_WEIGHT), unit);
      return tf.reshape(tf.add(tf.add(tf.mul(similarity, scale), offset), params.get(PAIR_BIAS)), [-1, 1]);
    });
  } else if (pairMode === 'bi') {
    params.linear('classifier', numLabels, 4 * h, true);
    lastLinear = 'classifier';
    apply = (hidden, inputs, ctx) => tf.tidy(() => {
      const [u, v] = splitPair(sentenceEmbedding(backbone, hidden, inputs, ctx));
      const features = drop(tf.concat([u, v, tf.abs(tf.sub(u, v)), tf.mul(u, v)], 1), ctx);
      return linearForward(features, params.get('classifier.weight'), params.get('classifier.bias'));
    });
  } else if (config.modelType === 'bert') {
    // The pooler is part of the checkpoint (frozen); a checkpoint without one gets a new, trainable pooler.
    const frozenPooler = backbone.weights.has('bert.pooler.dense.weight');
    if (!frozenPooler) params.linear('bert.pooler.dense', h, h, true);
    params.linear('classifier', numLabels, h, true);
    lastLinear = 'classifier';
    apply = (hidden, _inputs, ctx) => tf.tidy(() => {
      const first = firstToken(hidden);
      const dense = frozenPooler
        ? ctx.linear('bert.pooler.dense', first)
        : linearForward(first, params.get('bert.pooler.dense.weight'), params.get('bert.pooler.dense.bias'));
      const pooled = drop(tf.tanh(dense), ctx);
      return linearForward(pooled, params.get('classifier.weight'), params.get('classifier.bias'));
    });
  } else if (config.modelType === 'roberta') {
    params.linear('classifier.dense', h, h, true);
    params.linear('classifier.out_proj', numLabels, h, true);
    lastLinear = 'classifier.out_proj';
    apply = (hidden, _inputs, ctx) => tf.tidy(() => {
      const first = drop(firstToken(hidden), ctx);
      const dense = drop(tf.tanh(linearForward(first, params.get('classifier.dense.weight'), params.get('classifier.dense.bias'))), ctx);
      return linearForward(dense, params.get('classifier.out_proj.weight'), params.get('classifier.out_proj.bias'));
    });
  } else if (config.modelType === 'use_lite') {
    params.linear('classifier', numLabels, h, true);
    lastLinear = 'classifier';
    apply = (hidden, inputs, ctx) => tf.tidy(() => {
      const pooled = drop(useLitePooledEmbedding(hidden, inputs.attentionMask, ctx), ctx);
      return linearForward(pooled, params.get('classifier.weight'), params.get('classifier.bias'));
    });
  } else {
    params.linear('score', numLabels, h, false);
    lastLinear = 'score';
    apply = (hidden, inputs) => tf.tidy(() => linearForward(lastToken(hidden, inputs), params.get('score.weight')));
  }
  const trainable = params.trainable;
  // Regression: outputs in label units, mean + std · raw, unless the last layer came from a saved head
  // (already in label units).
  const fresh = lastLinear !== null && !params.loaded.has(`${lastLinear}.weight`);
  const scaling = task === 'regression' && fresh ? (opts.targetScaling ?? { offset: 0, scale: 1 }) : { offset: 0, scale: 1 };
  const identity = scaling.offset === 0 && scaling.scale === 1;
  const rawApply = apply;
  if (!identity) apply = (hidden, inputs, ctx) => tf.tidy(() => tf.add(tf.mul(rawApply(hidden, inputs, ctx), scaling.scale), scaling.offset));
  return {
    task,
    numLabels,
    pairMode,
    trainable,
    apply,
    savedTensors() {
      const out = new Map(constants);
      for (const [name, v] of trainable) {
        const data = Float32Array.from(v.dataSync() as Float32Array);
        if (!identity && lastLinear && name === `${lastLinear}.weight`) for (let i = 0; i < data.length; i++) data[i] *= scaling.scale;
        if (!identity && lastLinear && name === `${lastLinear}.bias`) for (let i = 0; i < data.length; i++) data[i] = data[i] * scaling.scale + scaling.offset;
        out.set(name, { shape: [...v.shape], data });
      }
      if (!identity && lastLinear && !trainable.has(`${lastLinear}.bias`)) {
        // A bias-free last layer (decoders' `score`) cannot hold the offset: not expected for regression heads here.
        throw new LoraxsError(`internal error: cannot fold the regression target mean into ${lastLinear}, which has no bias`);
      }
      return out;
    },
    dispose: () => trainable.forEach((v) => v.dispose()),
  };
}

/** The last non-padding token of each sequence (right padding): (B, T, H) -> (B, H). */
function lastToken(hidden: tf.Tensor3D, inputs: ForwardInputs): tf.Tensor2D {
  return tf.tidy(() => {
    const one = tf.scalar(1, 'int32');
    const last = tf.maximum(tf.sub(tf.sum(tf.cast(inputs.attentionMask, 'int32'), 1), one), tf.scalar(0, 'int32')) as tf.Tensor1D;
    return tokenAt(hidden, last);
  });
}

/**
 * One embedding per sequence, as bi pair mode compares them: use_lite's own sentence embedding (what the
 * package's embed() returns), the mean over tokens for BERT/RoBERTa (Sentence-BERT's default pooling),
 * the last token for decoders. (N, T, H) -> (N, H).
 */
export function sentenceEmbedding(backbone: Backbone, hidden: tf.Tensor3D, inputs: ForwardInputs, ctx: ForwardContext): tf.Tensor2D {
  if (backbone.config.modelType === 'use_lite') return useLitePooledEmbedding(hidden, inputs.attentionMask, ctx);
  if (backbone.config.kind === 'decoder') return lastToken(hidden, inputs);
  return tf.tidy(() => {
    const mask = tf.expandDims(tf.cast(inputs.attentionMask, 'float32'), 2); // (N, T, 1)
    return tf.div(tf.sum(tf.mul(hidden, mask), 1), tf.maximum(tf.sum(mask, 1), tf.scalar(1e-9))) as tf.Tensor2D;
  });
}

/** (2B, H) -> the first B rows and the last B rows. */
function splitPair(e: tf.Tensor2D): [tf.Tensor2D, tf.Tensor2D] {
  const [n, h] = e.shape;
  check(n % 2 === 0, () => `internal error: a bi-mode batch has an odd number of rows (${n})`);
  const b = n / 2;
  return [tf.slice(e, [0, 0], [b, h]), tf.slice(e, [b, 0], [b, h])];
}

/**
 * Row-wise weighted cosine similarity: Σ_k w_k u_k v_k / (|u| |v|), (B, H), (B, H), (H) -> (B); the cosine
 * when w = 1. `unit`: u and v are unit vectors already (no division).
 */
function weightedCosineRows(u: tf.Tensor2D, v: tf.Tensor2D, w: tf.Tensor, unit: boolean): tf.Tensor1D {
  return tf.tidy(() => {
    const dot = tf.sum(tf.mul(tf.mul(u, v), w), 1);
    if (unit) return dot as tf.Tensor1D;
    const norms = tf.mul(tf.sqrt(tf.sum(tf.square(u), 1)), tf.sqrt(tf.sum(tf.square(v), 1)));
    return tf.div(dot, tf.maximum(norms, tf.scalar(1e-12))) as tf.Tensor1D;
  });
}

/** The language-model head: lm_head.weight, or embed_tokens when the embeddings are tied. Frozen. */
function causalLmHead(backbone: Backbone, opts: HeadOptions): TaskHead {
  const config = backbone.config;
  if (config.kind !== 'decoder') {
    throw new LoraxsError(`task causal-lm needs a decoder model (llama, mistral, qwen2, gemma); this one is ${config.modelType}`,
      { file: 'config.json', detail: 'model_type' });
  }
  const untied = backbone.weights.get('lm_head.weight') ?? opts.checkpointHead?.get('lm_head.weight');
  const weight = config.tieWordEmbeddings ? backbone.weights.get('model.embed_tokens.weight') : untied;
  if (!weight) {
    throw new LoraxsError('the checkpoint has no lm_head.weight and config.json does not tie the word embeddings (tie_word_embeddings)',
      { file: 'config.json', detail: 'tie_word_embeddings' });
  }
  return {
    task: 'causal-lm',
    numLabels: weight.shape[0],
    pairMode: 'cross',
    trainable: new Map(),
    savedTensors: () => new Map(),
    apply: (hidden) => linearForward(hidden, weight),
    dispose: () => undefined,
  };
}

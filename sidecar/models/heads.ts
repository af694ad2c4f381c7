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
 */
import * as tf from '../backend/tf';
import { check, LoraxsError } from '../errors';
import { Rng } from '../rng';
import { dropoutRatesOf } from './backbone_options';
import { linearForward } from './plain_context';
import type { Backbone, ForwardContext, ForwardInputs } from './types';
import { useLitePooledEmbedding } from './use_lite';

export type HeadTask = 'classification' | 'regression' | 'causal-lm';

export interface TaskHead {
  task: HeadTask;
  /** Outputs per example (classification/regression) or the vocabulary size (causal LM). */
  numLabels: number;
  /** Trainable parameters by canonical name (`classifier.weight`, `score.weight`, ...); empty for causal LM. */
  trainable: Map<string, tf.Variable>;
  /** (B, T, H) -> classification/regression (B, numLabels); causal-lm (B, T, V) */
  apply(hidden: tf.Tensor3D, inputs: ForwardInputs, ctx: ForwardContext): tf.Tensor;
  dispose(): void;
}

export interface HeadOptions {
  /** Seed of the Rng that initialises new head parameters. */
  seed: number;
  /** Head tensors found in the checkpoint (`classifier.weight`, `score.weight`, ...); used when their shape fits. */
  checkpointHead?: Map<string, tf.Tensor>;
}

/** Builds the head's trainable parameters: from the checkpoint when it holds them with the right shape, else new. */
class ParameterMaker {
  readonly trainable = new Map<string, tf.Variable>();
  private readonly rng: Rng;

  constructor(private readonly backbone: Backbone, private readonly opts: HeadOptions, private readonly std: number) {
    this.rng = new Rng(opts.seed);
  }

  /** A Linear layer `name` (out × in), with a bias when `bias`. */
  linear(name: string, outFeatures: number, inFeatures: number, bias: boolean): void {
    this.parameter(`${name}.weight`, [outFeatures, inFeatures], 'normal');
    if (bias) this.parameter(`${name}.bias`, [outFeatures], 'zeros');
  }

  private parameter(name: string, shape: number[], init: 'normal' | 'zeros'): void {
    const found = this.opts.checkpointHead?.get(name) ?? this.backbone.weights.get(name);
    const size = shape.reduce((a, b) => a * b, 1);
    const fits = found && found.shape.length === shape.length && found.shape.every((d, i) => d === shape[i]);
    const value = fits
      ? tf.cast(found, 'float32')
      : init === 'zeros' ? tf.zeros(shape) : tf.tensor(this.rng.normalArray(size, this.std), shape);
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
  let apply: TaskHead['apply'];

  if (config.modelType === 'bert') {
    // The pooler is part of the checkpoint (frozen); a checkpoint without one gets a new, trainable pooler.
    const frozenPooler = backbone.weights.has('bert.pooler.dense.weight');
    if (!frozenPooler) params.linear('bert.pooler.dense', h, h, true);
    params.linear('classifier', numLabels, h, true);
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
    apply = (hidden, _inputs, ctx) => tf.tidy(() => {
      const first = drop(firstToken(hidden), ctx);
      const dense = drop(tf.tanh(linearForward(first, params.get('classifier.dense.weight'), params.get('classifier.dense.bias'))), ctx);
      return linearForward(dense, params.get('classifier.out_proj.weight'), params.get('classifier.out_proj.bias'));
    });
  } else if (config.modelType === 'use_lite') {
    params.linear('classifier', numLabels, h, true);
    apply = (hidden, inputs, ctx) => tf.tidy(() => {
      const pooled = drop(useLitePooledEmbedding(hidden, inputs.attentionMask, ctx), ctx);
      return linearForward(pooled, params.get('classifier.weight'), params.get('classifier.bias'));
    });
  } else {
    params.linear('score', numLabels, h, false);
    apply = (hidden, inputs) => tf.tidy(() => {
      const one = tf.scalar(1, 'int32');
      const last = tf.maximum(tf.sub(tf.sum(tf.cast(inputs.attentionMask, 'int32'), 1), one), tf.scalar(0, 'int32')) as tf.Tensor1D;
      return linearForward(tokenAt(hidden, last), params.get('score.weight'));
    });
  }
  const trainable = params.trainable;
  return {
    task,
    numLabels,
    trainable,
    apply,
    dispose: () => trainable.forEach((v) => v.dispose()),
  };
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
    trainable: new Map(),
    apply: (hidden) => linearForward(hidden, weight),
    dispose: () => undefined,
  };
}

/**
 * The ForwardContext without adapters: linear layers are x Wᵀ + b from the weights, and dropout draws its
 * masks from seeds taken from an Rng (so a run is reproducible and resumable).
 */
import * as tf from '../backend/tf';
import { assert } from '../errors';
import { Rng } from '../rng';
import { frozenProduct, isTrainable } from './frozen_product';
import type { ForwardContext, Weights } from './types';

/**
 * x Wᵀ + b.
 * @param x (..., in)
 * @param weight (out, in), as torch.nn.Linear stores it
 * @param bias (out) or undefined
 * @param frozen W is a frozen base weight: no gradient for it, and the tape keeps no copy (frozen_product.ts)
 * @returns (..., out)
 */
export function linearForward(x: tf.Tensor, weight: tf.Tensor, bias?: tf.Tensor, frozen = false): tf.Tensor {
  return tf.tidy(() => {
    const inFeatures = x.shape[x.shape.length - 1];
    assert(weight.shape[1] === inFeatures, () => `linear: input has ${inFeatures} features, weight is [${weight.shape.join(', ')}]`);
    const lead = x.shape.slice(0, -1);
    const x2 = tf.reshape(x, [-1, inFeatures]) as tf.Tensor2D;
    let y: tf.Tensor = frozen && !isTrainable(weight) ? frozenProduct(x2, weight as tf.Tensor2D) : tf.matMul(x2, weight as tf.Tensor2D, false, true);
    if (bias) y = tf.add(y, bias);
    return tf.reshape(y, [...lead, weight.shape[0]]);
  });
}

export interface PlainContextOptions {
  training: boolean;
  /** Source of dropout seeds in training mode (default Rng(0)). */
  rng?: Rng;
  /** More tensors by name (e.g. a head's variables), looked up before `weights`. */
  extra?: Map<string, tf.Tensor>;
  /** Recompute each block's activations in the backward pass (models/checkpointed_block.ts). */
  gradientCheckpointing?: boolean;
}

/** The trainable variables among `extra`'s `<module>.weight` / `<module>.bias` tensors. */
export function trainableExtras(extra: Map<string, tf.Tensor> | undefined, moduleNames: string[]): tf.Variable[] {
  const found: tf.Variable[] = [];
  if (!extra) return found;
  for (const m of moduleNames) {
    for (const t of [extra.get(`${m}.weight`), extra.get(`${m}.bias`)]) {
      if (t instanceof tf.Variable && t.trainable) found.push(t);
    }
  }
  return found;
}

export function plainContext(weights: Weights, opts: PlainContextOptions): ForwardContext {
  const rng = opts.rng ?? new Rng(0);
  const lookup = (name: string) => opts.extra?.get(name) ?? weights.get(name);
  return {
    training: opts.training,
    gradientCheckpointing: opts.gradientCheckpointing,
    linear(name: string, x: tf.Tensor): tf.Tensor {
      const weight = lookup(`${name}.weight`);
      assert(weight, () => `linear layer "${name}" has no weight "${name}.weight"`);
      return linearForward(x, weight, lookup(`${name}.bias`), !opts.extra?.has(`${name}.weight`));
    },
    dropout(x: tf.Tensor, rate: number): tf.Tensor {
      if (!opts.training || rate <= 0) return x;
      return tf.dropout(x, rate, undefined, rng.seed());
    },
    nextDropoutSeed: () => rng.seed(),
    trainableOf: (moduleNames) => trainableExtras(opts.extra, moduleNames),
  };
}

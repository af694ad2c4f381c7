/**
 * The LoRA-XS adapted linear layer and a ForwardContext that routes every adapted module through it:
 *
 *   y = x Wᵀ + b + (α/r) · ((x Aᵀ) Rᵀ) Bᵀ        x (N, in), A (r, in), R (r, r), B (out, r)
 *
 * which equals x (W + ΔW)ᵀ + b with ΔW = (α/r) · B R A = (α/r) · U_r R Σ_r V_rᵀ for the `svd` init. The
 * update is a chain of thin products (N·r·(in + r + out) multiply-adds); ΔW (out × in) is never formed
 * while training. Only R is a variable, so gradients flow to R alone (and to the head, elsewhere).
 */
import * as tf from '../backend/tf';
import { assert } from '../errors';
import { Rng } from '../rng';
import { linearForward, trainableExtras } from '../models/plain_context';
import { frozenProduct, isTrainable } from '../models/frozen_product';
import type { ForwardContext, Weights } from '../models/types';
import type { Factors } from './init';

/** One adapted module's tensors on the backend. */
export interface AdaptedModule {
  name: string;
  rank: number;
  /** α / r */
  scale: number;
  /** (r, in), frozen */
  A: tf.Tensor2D;
  /** (out, r), frozen */
  B: tf.Tensor2D;
  /** (r, r), the only trainable LoRA-XS parameter */
  R: tf.Variable<tf.Rank.R2>;
}

export interface AdaptedContextOptions {
  training: boolean;
  /** Source of dropout seeds in training mode (default Rng(0)). */
  rng?: Rng;
  /** More tensors by name (e.g. a head's variables), looked up before the base weights. */
  extra?: Map<string, tf.Tensor>;
  /** Recompute each block's activations in the backward pass (models/checkpointed_block.ts). */
  gradientCheckpointing?: boolean;
}

/** A module's frozen factors on the backend, with its scale α / r (what training and merging share). */
export function uploadFactors(factors: Factors, alpha: number): Pick<AdaptedModule, 'rank' | 'scale' | 'A' | 'B'> {
  const r = factors.rank;
  return {
    rank: r,
    scale: alpha / r,
    A: tf.tensor2d(factors.A, [r, factors.inFeatures]),
    B: tf.tensor2d(factors.B, [factors.outFeatures, r]),
  };
}

/** Uploads factors and R as an AdaptedModule (A and B as constants, R as a variable named `loraxs/<name>/R`). */
export function createAdaptedModule(name: string, factors: Factors, R: Float32Array, alpha: number, trainable = true): AdaptedModule {
  const r = factors.rank;
  assert(R.length === r * r, () => `R of ${name} has ${R.length} values, expected ${r}×${r}`);
  return {
    name,
    ...uploadFactors(factors, alpha),
    R: tf.variable(tf.tensor2d(R, [r, r]), trainable, `loraxs/${name}/R`) as tf.Variable<tf.Rank.R2>,
  };
}

export function disposeAdaptedModule(m: AdaptedModule): void {
  m.A.dispose();
  m.B.dispose();
  m.R.dispose();
}

/**
 * x Wᵀ + b + scale · ((x Aᵀ) Rᵀ) Bᵀ.
 * @param x (..., in)
 * @param weight (out, in)
 * @param bias (out) or undefined
 * @param frozen W is a frozen base weight: the tape keeps no copy of it or of x (models/frozen_product.ts)
 * @returns (..., out)
 */
export function adaptedLinear(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor | undefined, m: AdaptedModule, frozen = false): tf.Tensor {
  return tf.tidy(() => {
    const inFeatures = x.shape[x.shape.length - 1];
    assert(m.A.shape[1] === inFeatures, () => `adapted ${m.name}: input has ${inFeatures} features, A is [${m.A.shape.join(', ')}]`);
    const lead = x.shape.slice(0, -1);
    const x2 = tf.reshape(x, [-1, inFeatures]) as tf.Tensor2D; // (N, in)
    let y: tf.Tensor2D = frozen && !isTrainable(weight) ? frozenProduct(x2, weight as tf.Tensor2D) : tf.matMul(x2, weight as tf.Tensor2D, false, true); // (N, out)
    if (bias) y = tf.add(y, bias);
    const xa = tf.matMul(x2, m.A, false, true); // (N, r)
    const xar = tf.matMul(xa, m.R, false, true); // (N, r)
    const delta = tf.matMul(xar, m.B, false, true); // (N, out)
    y = tf.add(y, tf.mul(delta, m.scale));
    return tf.reshape(y, [...lead, m.B.shape[0]]);
  });
}

/**
 * A ForwardContext over the base weights in which the modules in `adapters` (by module name) are
 * adapted and every other linear layer is plain. Dropout is active only when training.
 */
export function adaptedContext(weights: Weights, adapters: Map<string, AdaptedModule>, opts: AdaptedContextOptions): ForwardContext {
  const rng = opts.rng ?? new Rng(0);
  const lookup = (name: string): tf.Tensor | undefined => opts.extra?.get(name) ?? weights.get(name);
  return {
    training: opts.training,
    gradientCheckpointing: opts.gradientCheckpointing,
    linear(name: string, x: tf.Tensor): tf.Tensor {
      const weight = lookup(`${name}.weight`);
      assert(weight, () => `linear layer "${name}" has no weight "${name}.weight"`);
      const bias = lookup(`${name}.bias`);
      const m = adapters.get(name);
      const frozen = !opts.extra?.has(`${name}.weight`); // a base weight, not a head parameter
      return m ? adaptedLinear(x, weight, bias, m, frozen) : linearForward(x, weight, bias, frozen);
    },
    dropout(x: tf.Tensor, rate: number): tf.Tensor {
      if (!opts.training || rate <= 0) return x;
      return tf.dropout(x, rate, undefined, rng.seed());
    },
    nextDropoutSeed: () => rng.seed(),
    trainableOf(moduleNames: string[]): tf.Variable[] {
      const rs = moduleNames.map((n) => adapters.get(n)?.R).filter((r): r is tf.Variable<tf.Rank.R2> => !!r && r.trainable);
      return [...rs, ...trainableExtras(opts.extra, moduleNames)];
    },
  };
}

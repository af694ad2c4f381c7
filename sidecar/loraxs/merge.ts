/**
 * Merging LoRA-XS into the base weights: W' = W + (α/r) · U_r R Σ_r V_rᵀ = W + scale · B R A, in float32
 * on the backend. After merging, the plain model computes what the adapted one did (up to float32
 * rounding), with no extra cost at inference.
 */
import * as tf from '../backend/tf';
import { LoraxsError } from '../errors';
import type { Weights } from '../models/types';
import type { AdaptedModule } from './adapted_context';

/** The parts of an adapted module a merge needs (AdaptedModule fits). */
export type MergeableModule = Pick<AdaptedModule, 'name' | 'scale' | 'A' | 'B'> & { R: tf.Tensor2D };

/**
 * ΔW = scale · B R A.
 * @returns (out, in)
 */
export function deltaWeight(m: MergeableModule): tf.Tensor2D {
  return tf.tidy(() => tf.mul(tf.matMul(tf.matMul(m.B, m.R), m.A), m.scale) as tf.Tensor2D);
}

/**
 * The weights with every adapted module's `<name>.weight` replaced by W + ΔW (new tensors). The other
 * entries of the returned map are the input's own tensors (shared, not copied): dispose only the merged
 * ones (`mergedNames`) separately from the base weights.
 */
export function mergeWeights(
  weights: Weights,
  adapters: Iterable<MergeableModule>,
  /** The adapter folder, named in errors. */
  source = 'adapter',
): { weights: Weights; mergedNames: string[] } {
  const out: Weights = new Map(weights);
  const mergedNames: string[] = [];
  try {
    for (const m of adapters) {
      const key = `${m.name}.weight`;
      const W = weights.get(key);
      if (!W) throw new LoraxsError(`the adapter adapts ${m.name}, but the model has no tensor ${key}`, { file: source, detail: key });
      const [out0, in0] = W.shape;
      if (m.B.shape[0] !== out0 || m.A.shape[1] !== in0) {
        throw new LoraxsError(
          `the adapter's factors of ${m.name} are ${m.B.shape[0]} × ${m.A.shape[1]}, but the model's weight is ${out0} × ${in0}`,
          { file: source, detail: key });
      }
      out.set(key, tf.tidy(() => tf.add(W, deltaWeight(m))));
      mergedNames.push(key);
    }
  } catch (e) {
    for (const k of mergedNames) out.get(k)?.dispose();
    throw e;
  }
  return { weights: out, mergedNames };
}

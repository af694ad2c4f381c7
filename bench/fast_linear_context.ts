/**
 * A proposal measured by the training benchmark, not used by the engine: the adapted ForwardContext of
 * sidecar/loraxs/adapted_context.ts with no transposed matMul in the big products. tfjs-backend-wasm
 * runs tf.matMul(x, W, false, true) on a slow path (about 10× slower than a plain product here), and the
 * engine's linear layers compute x Wᵀ that way. Here the frozen product is a tf.customGrad:
 *   forward   y = x · transpose(W)        (one transpose of W, then a plain product)
 *   backward  dx = dy · W                 (plain; W is frozen, so no gradient for it)
 * and the adapter's thin products use A, R, B transposed once per call. Same numbers up to float32
 * summation order.
 */
import * as tf from '../sidecar/backend/tf';
import { Rng } from '../sidecar/rng';
import type { ForwardContext, Weights } from '../sidecar/models/types';
import type { AdaptedModule } from '../sidecar/loraxs/adapted_context';
import { trainableExtras } from '../sidecar/models/plain_context';

/** x Wᵀ for a frozen W without a transposed matMul. @param x (N, in) @param W (out, in) @returns (N, out) */
function frozenLinear(x: tf.Tensor2D, W: tf.Tensor2D): tf.Tensor2D {
  const f = tf.customGrad(((xi: tf.Tensor) => ({
    value: tf.matMul(xi as tf.Tensor2D, tf.transpose(W)),
    gradFunc: (dy: tf.Tensor) => tf.matMul(dy as tf.Tensor2D, W),
  })) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(x) as tf.Tensor2D;
}

export function fastAdaptedContext(weights: Weights, adapters: Map<string, AdaptedModule>,
  opts: { training: boolean; rng?: Rng; extra?: Map<string, tf.Tensor>; gradientCheckpointing?: boolean }): ForwardContext {
  const rng = opts.rng ?? new Rng(0);
  const lookup = (name: string): tf.Tensor | undefined => opts.extra?.get(name) ?? weights.get(name);
  return {
    training: opts.training,
    gradientCheckpointing: opts.gradientCheckpointing,
    nextDropoutSeed: () => rng.seed(),
    trainableOf: (names) => [...names.map((n) => adapters.get(n)?.R).filter((r): r is tf.Variable<tf.Rank.R2> => !!r), ...trainableExtras(opts.extra, names)],
    linear(name: string, x: tf.Tensor): tf.Tensor {
      const weight = lookup(`${name}.weight`) as tf.Tensor2D;
      const bias = lookup(`${name}.bias`);
      const m = adapters.get(name);
      return tf.tidy(() => {
        const inFeatures = x.shape[x.shape.length - 1];
        const x2 = tf.reshape(x, [-1, inFeatures]) as tf.Tensor2D;
        const isVariable = opts.extra?.has(`${name}.weight`) ?? false;
        let y = isVariable ? tf.matMul(x2, tf.transpose(weight)) : frozenLinear(x2, weight);
        if (bias) y = tf.add(y, bias);
        if (m) {
          const delta = tf.matMul(tf.matMul(tf.matMul(x2, tf.transpose(m.A)), tf.transpose(m.R)), tf.transpose(m.B));
          y = tf.add(y, tf.mul(delta, m.scale));
        }
        return tf.reshape(y, [...x.shape.slice(0, -1), weight.shape[0]]);
      });
    },
    dropout(x: tf.Tensor, rate: number): tf.Tensor {
      if (!opts.training || rate <= 0) return x;
      return tf.dropout(x, rate, undefined, rng.seed());
    },
  };
}

/**
 * Global-norm gradient clipping with torch.nn.utils.clip_grad_norm_ semantics: the total norm is the L2
 * norm of all gradients together; every gradient is scaled by min(1, max_norm / (total_norm + 1e-6)).
 */
import * as tf from '../backend/tf';

/**
 * Clips `grads` in place (each clipped tensor replaces its entry; the old one is disposed) and returns
 * the total norm before clipping. maxNorm 0 disables clipping (the norm is still returned, for logging).
 * One read-back from the backend (the norm).
 */
export function clipGradNorm(grads: Map<string, tf.Tensor>, maxNorm: number): number {
  if (grads.size === 0) return 0;
  const normTensor = tf.tidy(() => {
    const squares = [...grads.values()].map((g) => tf.sum(tf.square(g)));
    return tf.sqrt(squares.length === 1 ? squares[0] : tf.addN(squares));
  });
  const totalNorm = normTensor.dataSync()[0];
  normTensor.dispose();
  if (maxNorm > 0) {
    const coef = Math.min(1, maxNorm / (totalNorm + 1e-6));
    if (coef < 1) {
      for (const [name, g] of grads) {
        grads.set(name, tf.mul(g, coef));
        g.dispose();
      }
    }
  }
  return totalNorm;
}

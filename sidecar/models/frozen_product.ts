/**
 * x Wᵀ for a frozen weight W as one tf.customGrad op that keeps nothing on the autodiff tape. tfjs's own
 * MatMul saves copies of both operands for its gradient (the wasm and native backends copy on save), so
 * every linear layer of a training forward pass kept a copy of its weight and of its input; with W frozen
 * the only gradient needed is dx = dy W, which needs neither. Same forward and backward products as
 * tf.matMul(x, W, false, true) and its gradient (numbers identical), without those copies.
 */
import * as tf from '../backend/tf';

/**
 * @param x (N, in)
 * @param weight (out, in), frozen (not a trainable variable: its gradient is not computed)
 * @returns (N, out)
 */
export function frozenProduct(x: tf.Tensor2D, weight: tf.Tensor2D): tf.Tensor2D {
  const f = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => ({
    value: tf.matMul(args[0] as tf.Tensor2D, weight, false, true),
    gradFunc: (dy: tf.Tensor) => tf.matMul(dy as tf.Tensor2D, weight),
  }));
  return f(x) as tf.Tensor2D;
}

/** Whether a weight is trained (then the plain tf.matMul keeps what its gradient needs). */
export function isTrainable(t: tf.Tensor): boolean {
  return t instanceof tf.Variable && t.trainable;
}

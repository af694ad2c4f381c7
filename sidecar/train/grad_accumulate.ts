/**
 * Gradient accumulation over micro-batches: adds one micro-batch's gradients (tf.variableGrads output,
 * keyed by variable name) into the running sums keyed by parameter name, disposing what it replaces.
 */
import * as tf from '../backend/tf';

/**
 * @param sums running sums by parameter name (empty before the first micro-batch)
 * @param grads this micro-batch's gradients by tf variable name (consumed)
 * @param params the trainable parameters by name
 * @returns the new sums (the old map's tensors are disposed or carried over)
 */
export function accumulateGrads(sums: Map<string, tf.Tensor>, grads: tf.NamedTensorMap, params: Map<string, tf.Variable>): Map<string, tf.Tensor> {
  const next = new Map<string, tf.Tensor>();
  for (const [name, v] of params) {
    const g = grads[v.name];
    if (!g) continue;
    const prev = sums.get(name);
    next.set(name, prev ? tf.add(prev, g) : g);
    if (prev) {
      prev.dispose();
      g.dispose();
    }
  }
  return next;
}

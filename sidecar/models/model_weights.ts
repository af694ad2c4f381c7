/** Looking up and validating a backbone's tensors by canonical name. */
import type * as tf from '../backend/tf';
import { LoraxsError } from '../errors';
import type { LinearModule, Weights } from './types';

/** Where the weights came from, for error messages (a checkpoint folder or file). */
export interface WeightSource {
  weights: Weights;
  /** Checkpoint path named in errors; `model.safetensors` when unknown. */
  source: string;
}

/** The tensor `name`, which must exist and (when given) have this shape. */
export function requireTensor(ws: WeightSource, name: string, shape?: number[]): tf.Tensor {
  const t = ws.weights.get(name);
  if (!t) {
    throw new LoraxsError(`the checkpoint has no tensor "${name}", which this model needs`, { file: ws.source, detail: name });
  }
  if (shape && (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))) {
    throw new LoraxsError(`tensor "${name}" has shape [${t.shape.join(', ')}] but config.json implies [${shape.join(', ')}]`,
      { file: ws.source, detail: name });
  }
  return t;
}

/**
 * Describes the linear layer `name` (W is `<name>.weight`, out × in; the bias `<name>.bias` is optional),
 * checking W's shape and the bias length.
 */
export function describeLinear(ws: WeightSource, name: string, outFeatures: number, inFeatures: number): LinearModule {
  requireTensor(ws, `${name}.weight`, [outFeatures, inFeatures]);
  const hasBias = ws.weights.has(`${name}.bias`);
  if (hasBias) requireTensor(ws, `${name}.bias`, [outFeatures]);
  return { name, outFeatures, inFeatures, hasBias };
}

/** A backbone and its task head together: input ids to task outputs. */
import * as tf from '../backend/tf';
import type { TaskHead } from './heads';
import type { Backbone, ForwardContext, ForwardInputs } from './types';

/**
 * The task outputs for a batch: classification/regression (B, numLabels), causal LM (B, T, V). Only the
 * result survives (intermediates are freed, except what an enclosing gradient tape keeps).
 */
export function taskLogits(backbone: Backbone, head: TaskHead, inputs: ForwardInputs, ctx: ForwardContext): tf.Tensor {
  return tf.tidy(() => head.apply(backbone.forward(inputs, ctx), inputs, ctx));
}

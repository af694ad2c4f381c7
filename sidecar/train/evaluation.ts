/**
 * Batches as tensors, the loss of one batch, and evaluation over a data set with the task's metrics.
 */
import * as tf from '../backend/tf';
import type { Task } from '../config/types';
import type { Example } from '../io/examples';
import type { ForwardInputs } from '../models/types';
import { batchIndices, makeBatch, type Batch } from './batching';
import { classificationLoss, regressionLoss, causalLmLoss, rowCrossEntropy } from './losses';
import { classificationMetrics, regressionMetrics, perplexity, argmaxRows, type MetricValues } from './metrics';
import type { EngineEvents } from '../records';

/** The metric that picks the best evaluation, and whether higher is better. */
export function bestMetricOf(task: Task): string {
  return task === 'classification' ? 'accuracy' : task === 'regression' ? 'pearson' : 'loss';
}

/** Whether a larger value of `metric` is better (accuracy, pearson) or a smaller one (loss, perplexity, mse). */
export function higherIsBetter(metric: string): boolean {
  return !(metric === 'loss' || metric === 'perplexity' || metric === 'mse');
}

export function isBetter(metric: string, value: number, than: number): boolean {
  if (!Number.isFinite(value)) return false;
  if (!Number.isFinite(than)) return true;
  return higherIsBetter(metric) ? value > than : value < than;
}

/** (B, T) tensors of a batch. The caller disposes them. */
export function batchInputs(batch: Batch): ForwardInputs {
  const shape: [number, number] = [batch.rows ?? batch.batchSize, batch.seqLen];
  return {
    inputIds: tf.tensor2d(batch.inputIds, shape, 'int32'),
    attentionMask: tf.tensor2d(batch.attentionMask, shape, 'int32'),
    tokenTypeIds: tf.tensor2d(batch.typeIds, shape, 'int32'),
  };
}

/** The training loss of one batch (see losses.ts); `denominator` is the causal-LM target count to divide by. */
export function batchLoss(task: Task, logits: tf.Tensor, batch: Batch, denominator?: number): tf.Scalar {
  return tf.tidy(() => {
    if (task === 'classification') return classificationLoss(logits, tf.tensor1d(batch.labels!, 'int32'));
    if (task === 'regression') return regressionLoss(logits, tf.tensor1d(batch.targets!, 'float32'));
    return causalLmLoss(logits, tf.tensor2d(batch.lmLabels!, [batch.batchSize, batch.seqLen], 'int32'), denominator);
  });
}

/** What evaluation needs of a model session. */
export interface Evaluable {
  logits(inputs: ForwardInputs, training: boolean): tf.Tensor;
}

/**
 * Metrics over `examples` in evaluation mode (no dropout): classification accuracy, F1, MCC and loss;
 * regression Pearson, Spearman, MSE and loss; causal LM loss (sum of token losses / token count) and
 * perplexity.
 */
export function evaluate(model: Evaluable, examples: Example[], task: Task, batchSize: number, padId: number, events?: EngineEvents): MetricValues {
  const batches = batchIndices(examples.map((_, i) => i), batchSize);
  const preds: number[] = [];
  const gold: number[] = [];
  let lossSum = 0;
  let count = 0;
  let numClasses = 0;
  batches.forEach((ix, b) => {
    const batch = makeBatch(examples, ix, padId);
    const inputs = batchInputs(batch);
    const [sum, n, out] = tf.tidy(() => {
      const logits = model.logits(inputs, false);
      if (task === 'causal-lm') {
        const mean = causalLmLoss(logits, tf.tensor2d(batch.lmLabels!, [batch.batchSize, batch.seqLen], 'int32'));
        return [tf.mul(mean, batch.numTargets ?? 0), batch.numTargets ?? 0, null] as const;
      }
      if (task === 'regression') {
        const p = tf.reshape(logits, [-1]);
        return [tf.sum(tf.squaredDifference(p, tf.tensor1d(batch.targets!))), batch.batchSize, p] as const;
      }
      numClasses = logits.shape[1]!;
      const ce = rowCrossEntropy(logits, tf.tensor1d(batch.labels!, 'int32'));
      return [tf.sum(ce), batch.batchSize, logits] as const;
    });
    for (const t of Object.values(inputs)) if (t) t.dispose();
    lossSum += sum.dataSync()[0];
    count += n;
    sum.dispose();
    if (out) {
      const values = out.dataSync();
      if (task === 'regression') {
        preds.push(...values);
        gold.push(...batch.targets!);
      } else {
        preds.push(...argmaxRows(values, numClasses));
        gold.push(...batch.labels!);
      }
      out.dispose();
    }
    events?.progress?.('evaluating', b + 1, batches.length);
  });
  const loss = lossSum / Math.max(count, 1);
  if (task === 'causal-lm') return { loss, perplexity: perplexity(loss) };
  if (task === 'regression') return { ...regressionMetrics(preds, gold), loss };
  return { ...classificationMetrics(preds, gold, numClasses), loss };
}

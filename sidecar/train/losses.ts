/**
 * Training losses, as transformers computes them, numerically stable (cross-entropy as
 * logsumexp(logits) − logit[label], never log(softmax)). Each runs inside tf.tidy and returns a scalar.
 */
import * as tf from '../backend/tf';
import { IGNORE_INDEX } from './batching';

/**
 * Per-row cross-entropy: logits (N, C), labels (N) int32 with every label in 0..C-1 → (N) float32,
 * −log softmax(logits)[label] = logsumexp(logits) − logits[label]. The gradient is written out,
 * (softmax(logits) − onehot(label)) · dy, because tfjs's gather gradient needs UnsortedSegmentSum, which
 * the wasm backend lacks.
 */
export function rowCrossEntropy(logits: tf.Tensor, labels: tf.Tensor): tf.Tensor1D {
  const [n, c] = logits.shape;
  const f = tf.customGrad(((x: tf.Tensor, y: tf.Tensor, save: tf.GradSaveFunc) => {
    const yInt = y.toInt();
    save([x, yInt]);
    const lse = tf.logSumExp(x, 1); // (N)
    // logits[i, labels[i]] from the flattened (N·C) logits.
    const flatIndex = tf.add(tf.mul(tf.range(0, n, 1, 'int32'), tf.scalar(c, 'int32')), yInt);
    const picked = tf.gather(tf.reshape(x, [n * c]), flatIndex); // (N)
    return {
      value: tf.sub(lse, picked),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, ys] = saved;
        const dx = tf.mul(tf.sub(tf.softmax(xs, -1), tf.oneHot(ys, c)), tf.reshape(dy, [n, 1]));
        return [dx, tf.zerosLike(ys)];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return tf.tidy(() => f(logits, labels) as tf.Tensor1D);
}

/** Sequence classification: logits (B, C), labels (B) int32 → mean cross-entropy over the batch. */
export function classificationLoss(logits: tf.Tensor, labels: tf.Tensor): tf.Scalar {
  return tf.tidy(() => tf.mean(rowCrossEntropy(logits, labels)) as tf.Scalar);
}

/** Regression (num_labels 1): predictions (B, 1) or (B), targets (B) → mean squared error. */
export function regressionLoss(predictions: tf.Tensor, targets: tf.Tensor): tf.Scalar {
  return tf.tidy(() => tf.mean(tf.squaredDifference(tf.reshape(predictions, [-1]), tf.reshape(targets, [-1]).toFloat())) as tf.Scalar);
}

/**
 * Causal LM: logits (B, T, V), labels (B, T) int32 (next-token targets, IGNORE_INDEX where ignored) →
 * sum of the token cross-entropies over the targets that count / `denominator`, which defaults to their
 * count in this batch (transformers' convention; with gradient accumulation the loop may pass the count
 * over the whole accumulated step). A batch with no counted targets gives 0.
 */
export function causalLmLoss(logits: tf.Tensor, labels: tf.Tensor, denominator?: number): tf.Scalar {
  return tf.tidy(() => {
    const [b, t, v] = logits.shape;
    const flatLabels = tf.reshape(labels.toInt(), [b * t]);
    const counts = tf.notEqual(flatLabels, tf.scalar(IGNORE_INDEX, 'int32'));
    const safeLabels = tf.where(counts, flatLabels, tf.zerosLike(flatLabels));
    const tokenLoss = rowCrossEntropy(tf.reshape(logits, [b * t, v]), safeLabels); // (B·T)
    const mask = counts.toFloat();
    const sum = tf.sum(tf.mul(tokenLoss, mask));
    const denom = denominator !== undefined ? tf.scalar(denominator) : tf.maximum(tf.sum(mask), tf.scalar(1));
    return tf.div(sum, denom) as tf.Scalar;
  });
}

/** Normalisation layers of the supported families, in float32. */
import * as tf from '../backend/tf';

/**
 * LayerNorm over the last axis (BERT, RoBERTa): (x - mean) / √(var + eps) · w + b, biased variance.
 * @param x (..., H)
 * @param weight (H)
 * @param bias (H)
 */
export function layerNorm(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor, eps: number): tf.Tensor {
  return tf.tidy(() => {
    const mean = tf.mean(x, -1, true);
    const centred = tf.sub(x, mean);
    const variance = tf.mean(tf.square(centred), -1, true);
    return tf.add(tf.mul(tf.mul(centred, tf.rsqrt(tf.add(variance, eps))), weight), bias);
  });
}

/**
 * RMSNorm over the last axis (Llama family): x · rsqrt(mean(x²) + eps) · w, or · (1 + w) for Gemma.
 * @param x (..., H)
 * @param weight (H)
 * @param unitOffset Gemma stores w - 1: the scale is (1 + w).
 */
export function rmsNorm(x: tf.Tensor, weight: tf.Tensor, eps: number, unitOffset = false): tf.Tensor {
  return tf.tidy(() => {
    const meanSquare = tf.mean(tf.square(x), -1, true);
    const normed = tf.mul(x, tf.rsqrt(tf.add(meanSquare, eps)));
    return tf.mul(normed, unitOffset ? tf.add(weight, 1) : weight);
  });
}

/**
 * Multi-head attention pieces shared by the encoder and decoder families: head split/merge, additive masks,
 * scaled dot-product attention and its grouped-query form.
 */
import * as tf from '../backend/tf';
import type { ForwardContext } from './types';

/**
 * What masked scores get added. transformers adds the dtype's minimum; any value this negative makes
 * exp() exactly 0 in float32, and unlike the minimum it cannot overflow to -inf when two masks add up, so a
 * row whose keys are all masked gives a uniform (not NaN) distribution.
 */
export const MASK_VALUE = -1e9;

/** (B, T, heads·D) -> (B, heads, T, D) */
export function splitHeads(x: tf.Tensor, heads: number, headDim: number): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, t] = x.shape;
    return tf.transpose(tf.reshape(x, [b, t, heads, headDim]), [0, 2, 1, 3]) as tf.Tensor4D;
  });
}

/** (B, heads, T, D) -> (B, T, heads·D) */
export function mergeHeads(x: tf.Tensor4D): tf.Tensor3D {
  return tf.tidy(() => {
    const [b, h, t, d] = x.shape;
    return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [b, t, h * d]) as tf.Tensor3D;
  });
}

/**
 * Additive mask hiding padded keys (bidirectional encoders).
 * @param attentionMask (B, T) 1 = token, 0 = padding
 * @returns (B, 1, 1, T): 0 where visible, MASK_VALUE where padded
 */
export function paddingMask(attentionMask: tf.Tensor2D): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, t] = attentionMask.shape;
    const hidden = tf.sub(1, tf.cast(attentionMask, 'float32'));
    return tf.reshape(tf.mul(hidden, MASK_VALUE), [b, 1, 1, t]) as tf.Tensor4D;
  });
}

/**
 * Additive causal mask combined with the padding mask: query i sees key j when j ≤ i, key j is not
 * padding, and (with a sliding window w) i - j < w.
 * @param attentionMask (B, T)
 * @returns (B, 1, T, T)
 */
export function causalMask(attentionMask: tf.Tensor2D, slidingWindow: number | null = null): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, t] = attentionMask.shape;
    const allowed = new Float32Array(t * t);
    for (let i = 0; i < t; i++) {
      for (let j = 0; j <= i; j++) {
        if (slidingWindow === null || i - j < slidingWindow) allowed[i * t + j] = 1;
      }
    }
    const causal = tf.tensor4d(allowed, [1, 1, t, t]);
    const keys = tf.reshape(tf.cast(attentionMask, 'float32'), [b, 1, 1, t]);
    const visible = tf.mul(causal, keys); // (B, 1, T, T), 1 or 0
    return tf.mul(tf.sub(1, visible), MASK_VALUE) as tf.Tensor4D;
  });
}

/**
 * The additive causal mask of `t` new queries at positions offset..offset+t-1 over `offset + t` keys (the
 * cached ones first), for decoding with a KV cache; no padding (one unpadded sequence per batch row).
 * @returns (1, 1, t, offset + t)
 */
export function causalMaskAt(offset: number, t: number, slidingWindow: number | null = null): tf.Tensor4D {
  const tk = offset + t;
  const values = new Float32Array(t * tk);
  for (let i = 0; i < t; i++) {
    const q = offset + i;
    for (let j = 0; j < tk; j++) {
      const visible = j <= q && (slidingWindow === null || q - j < slidingWindow);
      if (!visible) values[i * tk + j] = MASK_VALUE;
    }
  }
  return tf.tensor4d(values, [1, 1, t, tk]);
}

/**
 * softmax(q kᵀ · scale + mask) v, with dropout on the attention probabilities.
 * @param q (B, heads, Tq, D)
 * @param k (B, heads, Tk, D)
 * @param v (B, heads, Tk, D)
 * @param mask additive, broadcastable to (B, heads, Tq, Tk)
 * @returns (B, heads, Tq, D)
 */
export function dotProductAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor4D, scale: number,
  ctx: ForwardContext, dropoutRate: number): tf.Tensor4D {
  return tf.tidy(() => {
    const scores = tf.add(tf.mul(tf.matMul(q, k, false, true), scale), mask);
    let probs = tf.softmax(scores, -1);
    if (dropoutRate > 0) probs = ctx.dropout(probs, dropoutRate);
    return tf.matMul(probs, v) as tf.Tensor4D;
  });
}

/**
 * Grouped-query attention without repeating keys and values: each of the kvHeads key/value heads serves
 * `groups` consecutive query heads (transformers' repeat_kv order), so the queries of one group are
 * stacked along the sequence axis, (B, heads, T, D) -> (B, kvHeads, groups·T, D) (a free reshape), and
 * attend to their shared head in one product. The same numbers as dotProductAttention on repeated k and v,
 * without tiling k and v (and summing their gradients back) in every layer.
 * @param q (B, kvHeads·groups, T, D)
 * @param k (B, kvHeads, Tk, D)
 * @param v (B, kvHeads, Tk, D)
 * @param groupedMask additive, broadcastable to (B, kvHeads, groups·T, Tk): see groupMask
 * @returns (B, kvHeads·groups, T, D)
 */
export function groupedQueryAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, groupedMask: tf.Tensor4D, scale: number,
  ctx: ForwardContext, dropoutRate: number): tf.Tensor4D {
  const [b, heads, t, d] = q.shape;
  const kvHeads = k.shape[1];
  if (heads === kvHeads) return dotProductAttention(q, k, v, groupedMask, scale, ctx, dropoutRate);
  return tf.tidy(() => {
    const stacked = tf.reshape(q, [b, kvHeads, (heads / kvHeads) * t, d]) as tf.Tensor4D;
    return tf.reshape(dotProductAttention(stacked, k, v, groupedMask, scale, ctx, dropoutRate), [b, heads, t, d]) as tf.Tensor4D;
  });
}

/** A (B, 1, T, Tk) mask repeated for `groups` stacked query groups: (B, 1, groups·T, Tk). */
export function groupMask(mask: tf.Tensor4D, groups: number): tf.Tensor4D {
  return groups === 1 ? mask : tf.tidy(() => tf.tile(mask, [1, 1, groups, 1]) as tf.Tensor4D);
}

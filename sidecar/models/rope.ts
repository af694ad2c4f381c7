/**
 * Rotary position embeddings as transformers applies them to the Llama family: inverse frequencies
 * θ^(-2i/d) (with the `linear`, `dynamic` and Llama-3.1 `llama3` scalings), cos/sin of position × frequency
 * duplicated over both halves, and the rotate-half form q·cos + rotate_half(q)·sin.
 */
import * as tf from '../backend/tf';
import type { ModelConfig } from './types';

const f32 = Math.fround;

/**
 * The inverse frequencies (headDim / 2 of them), rounded through float32 at each step as torch computes
 * them (`1 / base ** (arange(0, d, 2).float() / d)`), then rescaled as the config's rope scaling asks.
 * `dynamic` NTK scaling only changes frequencies beyond max_position_embeddings, so within the model's
 * positions it equals the default.
 */
export function ropeInverseFrequencies(config: Pick<ModelConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>): Float32Array {
  const dim = config.headDim;
  const half = dim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = f32(1 / f32(Math.pow(config.ropeTheta, f32((2 * i) / dim))));
  const scaling = config.ropeScaling;
  if (!scaling || scaling.ropeType === 'default' || scaling.ropeType === 'dynamic') return inv;
  const factor = scaling.factor ?? 1;
  if (scaling.ropeType === 'linear') return inv.map((f) => f32(f / factor));
  // llama3: long wavelengths are slowed by `factor`, short ones kept, and the band between interpolated.
  const low = scaling.lowFreqFactor ?? 1;
  const high = scaling.highFreqFactor ?? 4;
  const oldContext = scaling.originalMaxPositionEmbeddings ?? 8192;
  const lowFreqWavelen = oldContext / low;
  const highFreqWavelen = oldContext / high;
  return inv.map((f) => {
    const wavelen = f32((2 * Math.PI) / f);
    const scaled = wavelen > lowFreqWavelen ? f32(f / factor) : f;
    const mediumBand = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
    if (!mediumBand) return scaled;
    const smooth = f32(f32(f32(oldContext / wavelen) - low) / (high - low));
    return f32(f32(f32(f32(1 - smooth) * scaled) / factor) + f32(smooth * scaled));
  });
}

/**
 * cos and sin tables for positions start..start+seqLen-1 (start is 0 except when a KV cache holds the
 * earlier positions), each (T, D): angle p·f for the D/2 frequencies, repeated for both halves
 * (`cat((freqs, freqs), -1)`).
 */
export function ropeTables(inverseFrequencies: Float32Array, seqLen: number, start = 0): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const half = inverseFrequencies.length;
  const dim = 2 * half;
  const cos = new Float32Array(seqLen * dim);
  const sin = new Float32Array(seqLen * dim);
  for (let p = 0; p < seqLen; p++) {
    for (let i = 0; i < half; i++) {
      const angle = f32((start + p) * inverseFrequencies[i]);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      cos[p * dim + i] = c;
      cos[p * dim + half + i] = c;
      sin[p * dim + i] = s;
      sin[p * dim + half + i] = s;
    }
  }
  return { cos: tf.tensor2d(cos, [seqLen, dim]), sin: tf.tensor2d(sin, [seqLen, dim]) };
}

/**
 * Applies the rotation: x·cos + rotate_half(x)·sin with rotate_half(x) = cat(-x₂, x₁).
 * @param x (B, heads, T, D)
 * @param cos (T, D)
 * @param sin (T, D)
 */
export function applyRope(x: tf.Tensor4D, cos: tf.Tensor2D, sin: tf.Tensor2D): tf.Tensor4D {
  return tf.tidy(() => {
    const half = x.shape[3] / 2;
    const [x1, x2] = tf.split(x, [half, half], 3);
    const rotated = tf.concat([tf.neg(x2), x1], 3);
    return tf.add(tf.mul(x, cos), tf.mul(rotated, sin)) as tf.Tensor4D;
  });
}

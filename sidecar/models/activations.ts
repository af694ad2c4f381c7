/**
 * Activation functions by the names config.json uses (`hidden_act`, `hidden_activation`), computed as
 * transformers' ACT2FN computes them in float32.
 */
import * as tf from '../backend/tf';
import { LoraxsError } from '../errors';

export type Activation = (x: tf.Tensor) => tf.Tensor;

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** Exact GELU, x · Φ(x) = 0.5 x (1 + erf(x / √2)) (`gelu`, torch's default `nn.functional.gelu`). */
export function geluErf(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))));
}

/** GELU with the tanh approximation: 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))) (`gelu_new`, `gelu_pytorch_tanh`). */
export function geluTanh(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), SQRT_2_OVER_PI);
    return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(inner)));
  });
}

/** x · sigmoid(1.702 x) (`quick_gelu`). */
export function quickGelu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(tf.mul(x, 1.702))));
}

/** x · sigmoid(x) (`silu`, `swish`). */
export function silu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)));
}

const ACTIVATIONS: Record<string, Activation> = {
  gelu: geluErf,
  gelu_python: geluErf,
  gelu_new: geluTanh,
  gelu_pytorch_tanh: geluTanh,
  gelu_fast: geluTanh,
  quick_gelu: quickGelu,
  silu,
  swish: silu,
  relu: (x) => tf.relu(x),
  tanh: (x) => tf.tanh(x),
};

/** The activation named `name` in config.json; unknown names are refused with the list of known ones. */
export function activationByName(name: string, configFile = 'config.json'): Activation {
  const fn = ACTIVATIONS[name];
  if (!fn) {
    throw new LoraxsError(`unsupported activation "${name}"; supported: ${Object.keys(ACTIVATIONS).join(', ')}`,
      { file: configFile, detail: 'hidden_act' });
  }
  return fn;
}

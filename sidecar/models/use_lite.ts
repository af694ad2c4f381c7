/**
 * The `use_lite` encoder (Universal Sentence Encoder lite, tensor2tensor's KonaTransformer) as its
 * TF.js GraphModel computes it (layout and names in use_lite_layout.ts):
 *   x = 2·E[ids] + timing signal                       (the graph adds the embeddings to themselves plus
 *                                                         the timing signal: AddTimingSignal in a residual)
 *   per layer: y = attention(LN(x)) + (residual_proj(x) or x);  x = y + ffn(LN(y))          (pre-norm)
 *   embedding = l2_normalize(tanh(pooler.dense(mean of x over the tokens)))
 * The timing signal is tensor2tensor's get_timing_signal_1d: [sin(p·w_j), cos(p·w_j)] with
 * w_j = min_timescale · exp(-j · ln(max/min) / (E/2 - 1)). LayerNorm eps 1e-6, attention scores scaled by
 * (in_i / heads)^-½, padded keys masked. Every linear layer goes through ctx.linear, so LoRA-XS adapts any of
 * them; the pooler is run by the classification head (heads.ts, through useLitePooledEmbedding) with ctx.linear too.
 */
import * as tf from '../backend/tf';
import { check, LoraxsError } from '../errors';
import { dotProductAttention, mergeHeads, paddingMask, splitHeads } from './attention';
import { type BackboneOptions, resolveDropout, type TransformerBackbone } from './backbone_options';
import { describeLinear, requireTensor, type WeightSource } from './model_weights';
import { checkpointedBlock } from './checkpointed_block';
import { layerNorm } from './norms';
import type { ForwardContext, ForwardInputs, LinearModule, ModelConfig, Weights } from './types';
import {
  layerInputWidth, USE_LITE_POOLER, USE_LITE_WORD_EMBEDDINGS, useLiteDims, useLiteLayerNames, type UseLiteDims,
} from './use_lite_layout';

/** L2 normalisation's floor on the squared norm (tf.nn.l2_normalize's epsilon, as in the graph). */
const L2_EPSILON = 1e-12;

/**
 * The timing signal of positions 0..T-1: (T, E), sines in the first E/2 channels, cosines in the rest.
 * Computed in float64 from float32 inputs, as the graph's float32 ops round them.
 */
export function timingSignal(length: number, channels: number, minTimescale: number, maxTimescale: number): tf.Tensor2D {
  const half = Math.floor(channels / 2);
  const f = Math.fround;
  const increment = f(-Math.log(maxTimescale / minTimescale) / Math.max(half - 1, 1));
  const inv = Array.from({ length: half }, (_, j) => f(minTimescale * f(Math.exp(f(j * increment)))));
  const out = new Float32Array(length * channels);
  for (let p = 0; p < length; p++) {
    for (let j = 0; j < half; j++) {
      const angle = f(p * inv[j]);
      out[p * channels + j] = Math.sin(angle);
      out[p * channels + half + j] = Math.cos(angle);
    }
  }
  return tf.tensor2d(out, [length, channels]);
}

/**
 * The sentence embedding from the last layer's states: masked mean over the tokens (divided by
 * max(tokens, 1)), pooler.dense through ctx.linear, tanh, L2 normalisation.
 * @param hidden (B, T, H)
 * @param attentionMask (B, T) 1 on tokens (right padding)
 * @returns (B, H), unit norm
 */
export function useLitePooledEmbedding(hidden: tf.Tensor3D, attentionMask: tf.Tensor2D, ctx: ForwardContext): tf.Tensor2D {
  return tf.tidy(() => {
    const [b, t, h] = hidden.shape;
    const mask = tf.reshape(tf.cast(attentionMask, 'float32'), [b, 1, t]);
    const summed = tf.reshape(tf.matMul(mask, hidden), [b, h]);
    const count = tf.maximum(tf.reshape(tf.sum(mask, 2), [b, 1]), 1);
    const pooled = tf.tanh(ctx.linear(USE_LITE_POOLER, tf.div(summed, count)));
    const norm = tf.rsqrt(tf.maximum(tf.sum(tf.square(pooled), 1, true), L2_EPSILON));
    return tf.mul(pooled, norm) as tf.Tensor2D;
  });
}

interface LayerWeights {
  width: number;
  headDim: number;
  names: ReturnType<typeof useLiteLayerNames>;
  attentionNorm: [tf.Tensor, tf.Tensor];
  ffnNorm: [tf.Tensor, tf.Tensor];
  projectsResidual: boolean;
}

/** The use_lite backbone: forward gives the last layer's states (B, T, hidden), before pooling. */
export function createUseLite(config: ModelConfig, weights: Weights, opts: BackboneOptions = {}): TransformerBackbone {
  const ws: WeightSource = { weights, source: opts.source ?? 'model.safetensors' };
  const dims: UseLiteDims = useLiteDims(config);
  const act = config.hiddenAct;
  check(act === 'relu', () => `use_lite: hidden_act "${act}" is not supported (the family uses relu)`, { file: 'config.json', detail: 'hidden_act' });
  check(dims.embeddingSize % 2 === 0, () => `use_lite: embedding_size ${dims.embeddingSize} must be even (sine and cosine halves)`,
    { file: 'config.json', detail: 'embedding_size' });
  const dropoutRates = resolveDropout(config, opts.dropout);
  const wordEmbeddings = requireTensor(ws, USE_LITE_WORD_EMBEDDINGS, [dims.vocabSize, dims.embeddingSize]);

  const modules: LinearModule[] = [];
  const norm = (name: string, w: number): [tf.Tensor, tf.Tensor] => [requireTensor(ws, `${name}.weight`, [w]), requireTensor(ws, `${name}.bias`, [w])];
  const layers: LayerWeights[] = Array.from({ length: dims.numLayers }, (_, i) => {
    const names = useLiteLayerNames(i);
    const width = layerInputWidth(dims, i);
    check(width % dims.numHeads === 0, () => `use_lite: layer ${i} width ${width} is not a multiple of num_attention_heads ${dims.numHeads}`,
      { file: 'config.json', detail: 'num_attention_heads' });
    const projectsResidual = width !== dims.hidden;
    modules.push(describeLinear(ws, names.qkv, 3 * width, width), describeLinear(ws, names.attentionOutput, dims.hidden, width));
    if (projectsResidual) modules.push(describeLinear(ws, names.residualProj, dims.hidden, width));
    modules.push(describeLinear(ws, names.intermediate, dims.intermediate, dims.hidden), describeLinear(ws, names.output, dims.hidden, dims.intermediate));
    return { width, headDim: width / dims.numHeads, names, attentionNorm: norm(names.attentionNorm, width), ffnNorm: norm(names.ffnNorm, dims.hidden), projectsResidual };
  });
  modules.push(describeLinear(ws, USE_LITE_POOLER, dims.hidden, dims.hidden));

  function forward(inputs: ForwardInputs, ctx: ForwardContext): tf.Tensor3D {
    const [, t] = inputs.inputIds.shape;
    if (t > dims.maxPositions) {
      throw new LoraxsError(`sequence length ${t} exceeds the model's ${dims.maxPositions} positions; lower training.max_length`);
    }
    return tf.tidy(() => {
      const drop = (x: tf.Tensor, rate: number) => (ctx.training && rate > 0 ? ctx.dropout(x, rate) : x);
      const embedded = tf.gather(wordEmbeddings, inputs.inputIds);
      const timing = timingSignal(t, dims.embeddingSize, dims.minTimescale, dims.maxTimescale);
      let x: tf.Tensor = drop(tf.add(tf.add(embedded, embedded), timing), dropoutRates.hidden);
      const mask = paddingMask(inputs.attentionMask);
      for (const layer of layers) {
        const { names, width, headDim } = layer;
        const block = (input: tf.Tensor, c: ForwardContext, [m]: tf.Tensor[]): tf.Tensor => {
          const dropIn = (t: tf.Tensor, rate: number) => (c.training && rate > 0 ? c.dropout(t, rate) : t);
          const normed = layerNorm(input, layer.attentionNorm[0], layer.attentionNorm[1], config.normEps);
          const [q, k, v] = tf.split(c.linear(names.qkv, normed), [width, width, width], -1);
          const heads = (z: tf.Tensor) => splitHeads(z, dims.numHeads, headDim);
          const context = mergeHeads(dotProductAttention(heads(q), heads(k), heads(v), m as tf.Tensor4D, 1 / Math.sqrt(headDim), c,
            c.training ? dropoutRates.attention : 0));
          const attended = dropIn(c.linear(names.attentionOutput, context), dropoutRates.hidden);
          const residual = layer.projectsResidual ? c.linear(names.residualProj, input) : input;
          const y = tf.add(attended, residual);
          const inner = tf.relu(c.linear(names.intermediate, layerNorm(y, layer.ffnNorm[0], layer.ffnNorm[1], config.normEps)));
          return tf.add(y, dropIn(c.linear(names.output, inner), dropoutRates.hidden));
        };
        x = ctx.training && ctx.gradientCheckpointing ? checkpointedBlock(block, x, ctx, Object.values(names), [mask]) : block(x, ctx, [mask]);
      }
      return x as tf.Tensor3D;
    });
  }

  return { config, weights, dropoutRates, linearModules: () => modules.map((m) => ({ ...m })), forward };
}

/**
 * BERT and RoBERTa encoders as transformers' BertModel / RobertaModel compute them: word + position +
 * token-type embeddings, LayerNorm, dropout, then post-norm layers (self-attention, dense, dropout, residual,
 * LayerNorm; intermediate dense + activation, output dense, dropout, residual, LayerNorm). Every linear layer
 * goes through ctx.linear under the names of BertForSequenceClassification / RobertaForSequenceClassification.
 */
import * as tf from '../backend/tf';
import { check, LoraxsError } from '../errors';
import { activationByName } from './activations';
import { dotProductAttention, mergeHeads, paddingMask, splitHeads } from './attention';
import { type BackboneOptions, resolveDropout, type TransformerBackbone } from './backbone_options';
import { describeLinear, requireTensor, type WeightSource } from './model_weights';
import { checkpointedBlock } from './checkpointed_block';
import { layerNorm } from './norms';
import type { ForwardContext, ForwardInputs, LinearModule, ModelConfig, Weights } from './types';

/**
 * RoBERTa's positions: padding_idx + 1 + the running count of non-padding tokens, and padding_idx itself
 * at padding (transformers' create_position_ids_from_input_ids).
 * @param inputIds (B, T) int32
 * @returns (B, T) int32
 */
export function robertaPositionIds(inputIds: tf.Tensor2D, paddingIdx: number): tf.Tensor2D {
  return tf.tidy(() => {
    const notPad = tf.cast(tf.notEqual(inputIds, paddingIdx), 'int32');
    return tf.add(tf.mul(tf.cumsum(notPad, 1), notPad), tf.scalar(paddingIdx, 'int32')) as tf.Tensor2D;
  });
}

/** BertModel / RobertaModel (without a pooler: the pooler belongs to the classification head). */
export function createEncoder(config: ModelConfig, weights: Weights, opts: BackboneOptions = {}): TransformerBackbone {
  const prefix = config.modelType === 'roberta' ? 'roberta' : 'bert';
  const ws: WeightSource = { weights, source: opts.source ?? 'model.safetensors' };
  const { hiddenSize: h, intermediateSize: inter, numHeads } = config;
  check(h % numHeads === 0, () => `hidden_size ${h} is not a multiple of num_attention_heads ${numHeads}`,
    { file: 'config.json', detail: 'hidden_size' });
  const positionType = config.raw.position_embedding_type;
  check(positionType === undefined || positionType === null || positionType === 'absolute',
    () => `position_embedding_type "${String(positionType)}" is not supported (only "absolute")`,
    { file: 'config.json', detail: 'position_embedding_type' });
  const headDim = h / numHeads;
  const activation = activationByName(config.hiddenAct);
  const dropoutRates = resolveDropout(config, opts.dropout);
  const paddingIdx = config.padTokenId ?? 1;

  const emb = `${prefix}.embeddings`;
  const wordEmbeddings = requireTensor(ws, `${emb}.word_embeddings.weight`, [config.vocabSize, h]);
  const positionEmbeddings = requireTensor(ws, `${emb}.position_embeddings.weight`, [config.maxPositionEmbeddings, h]);
  const tokenTypeEmbeddings = requireTensor(ws, `${emb}.token_type_embeddings.weight`, [config.typeVocabSize, h]);
  const embNorm = [requireTensor(ws, `${emb}.LayerNorm.weight`, [h]), requireTensor(ws, `${emb}.LayerNorm.bias`, [h])];

  const modules: LinearModule[] = [];
  const layers = Array.from({ length: config.numLayers }, (_, i) => {
    const p = `${prefix}.encoder.layer.${i}`;
    const names = {
      query: `${p}.attention.self.query`,
      key: `${p}.attention.self.key`,
      value: `${p}.attention.self.value`,
      attentionOut: `${p}.attention.output.dense`,
      intermediate: `${p}.intermediate.dense`,
      output: `${p}.output.dense`,
    };
    modules.push(
      describeLinear(ws, names.query, h, h), describeLinear(ws, names.key, h, h), describeLinear(ws, names.value, h, h),
      describeLinear(ws, names.attentionOut, h, h), describeLinear(ws, names.intermediate, inter, h),
      describeLinear(ws, names.output, h, inter));
    const norm = (n: string) => [requireTensor(ws, `${p}.${n}.LayerNorm.weight`, [h]), requireTensor(ws, `${p}.${n}.LayerNorm.bias`, [h])];
    return { names, attentionNorm: norm('attention.output'), outputNorm: norm('output') };
  });
  // BertForSequenceClassification's pooler is a linear layer of the model (PEFT can target it); the
  // classification head calls it. RobertaForSequenceClassification has none.
  if (prefix === 'bert' && weights.has('bert.pooler.dense.weight')) modules.push(describeLinear(ws, 'bert.pooler.dense', h, h));

  function embed(inputs: ForwardInputs): tf.Tensor3D {
    const [b, t] = inputs.inputIds.shape;
    const positions = prefix === 'roberta'
      ? robertaPositionIds(inputs.inputIds, paddingIdx)
      : tf.tile(tf.expandDims(tf.range(0, t, 1, 'int32'), 0), [b, 1]);
    // RoBERTa has one token type (its tokenizer gives none or zeros); pair markers from elsewhere are ignored.
    const tokenTypes = inputs.tokenTypeIds && config.typeVocabSize > 1 ? inputs.tokenTypeIds : tf.zeros([b, t], 'int32');
    const sum = tf.add(tf.add(tf.gather(wordEmbeddings, inputs.inputIds), tf.gather(tokenTypeEmbeddings, tokenTypes)),
      tf.gather(positionEmbeddings, positions));
    return layerNorm(sum, embNorm[0], embNorm[1], config.normEps) as tf.Tensor3D;
  }

  function forward(inputs: ForwardInputs, ctx: ForwardContext): tf.Tensor3D {
    const [, t] = inputs.inputIds.shape;
    const maxT = prefix === 'roberta' ? config.maxPositionEmbeddings - paddingIdx - 1 : config.maxPositionEmbeddings;
    if (t > maxT) throw new LoraxsError(`sequence length ${t} exceeds the model's ${maxT} positions; lower training.max_length`);
    return tf.tidy(() => {
      const drop = (x: tf.Tensor, rate: number) => (ctx.training && rate > 0 ? ctx.dropout(x, rate) : x);
      let x: tf.Tensor = drop(embed(inputs), dropoutRates.hidden);
      const mask = paddingMask(inputs.attentionMask);
      const scale = 1 / Math.sqrt(headDim);
      for (const layer of layers) {
        const { names } = layer;
        const block = (input: tf.Tensor, c: ForwardContext, [m]: tf.Tensor[]): tf.Tensor => {
          const dropIn = (t: tf.Tensor, rate: number) => (c.training && rate > 0 ? c.dropout(t, rate) : t);
          const q = splitHeads(c.linear(names.query, input), numHeads, headDim);
          const k = splitHeads(c.linear(names.key, input), numHeads, headDim);
          const v = splitHeads(c.linear(names.value, input), numHeads, headDim);
          const context = mergeHeads(dotProductAttention(q, k, v, m as tf.Tensor4D, scale, c, c.training ? dropoutRates.attention : 0));
          const attended = dropIn(c.linear(names.attentionOut, context), dropoutRates.hidden);
          const attentionOutput = layerNorm(tf.add(attended, input), layer.attentionNorm[0], layer.attentionNorm[1], config.normEps);
          const intermediate = activation(c.linear(names.intermediate, attentionOutput));
          const out = dropIn(c.linear(names.output, intermediate), dropoutRates.hidden);
          return layerNorm(tf.add(out, attentionOutput), layer.outputNorm[0], layer.outputNorm[1], config.normEps);
        };
        x = ctx.training && ctx.gradientCheckpointing ? checkpointedBlock(block, x, ctx, Object.values(names), [mask]) : block(x, ctx, [mask]);
      }
      return x as tf.Tensor3D;
    });
  }

  return { config, weights, dropoutRates, linearModules: () => modules.map((m) => ({ ...m })), forward };
}

/**
 * The linear layers of each model family, and the base model's parameter count, from config.json alone:
 * the module lists the engine's backbones build (models/bert.ts, models/llama.ts, models/use_lite*.ts),
 * for `loraxs params`, hover and lint, which never load weights.
 */
import type { LinearModule, ModelConfig } from './types';
import { useLiteLinearModules, useLiteParamCount } from './use_lite_layout';

/**
 * The linear layers of a model, with transformers' task-class names and W's shape (out × in), in forward
 * order; the same list the engine's backbones build (models/bert.ts, models/llama.ts).
 *   bert/roberta, per layer `<type>.encoder.layer.<i>.`: attention.self.query / key / value (h × h),
 *     attention.output.dense (h × h), intermediate.dense (i × h), output.dense (h × i); all with bias.
 *     BERT also `bert.pooler.dense` (h × h), which BertForSequenceClassification runs (a `dense` key
 *     matches it); RobertaForSequenceClassification has no pooler.
 *   llama/mistral/qwen2/gemma, per layer `model.layers.<i>.`: self_attn.q_proj (nH·hd × h), k_proj and
 *     v_proj (nKV·hd × h), o_proj (h × nH·hd), mlp.gate_proj and up_proj (i × h), mlp.down_proj (h × i).
 *   use_lite (models/use_lite_layout.ts), per layer `use_lite.encoder.layer.<i>.`: attention.qkv (3·w × w),
 *     attention.output (h × w), residual_proj (h × w, where the layer's input width w ≠ h), ffn.intermediate
 *     (i × h), ffn.output (h × i); then `use_lite.pooler.dense` (h × h), which the classification head runs.
 * Task heads (classifier, score, lm_head) are not listed: they are trained or frozen whole, not adapted.
 */
export function linearModulesOf(config: ModelConfig, opts: { bertPooler?: boolean } = {}): LinearModule[] {
  if (config.modelType === 'use_lite') return useLiteLinearModules(config);
  const { hiddenSize: h, intermediateSize: inter, numLayers } = config;
  const modules: LinearModule[] = [];
  const add = (name: string, outFeatures: number, inFeatures: number, hasBias: boolean): void => {
    modules.push({ name, outFeatures, inFeatures, hasBias });
  };
  if (config.kind === 'encoder') {
    const prefix = config.modelType;
    for (let i = 0; i < numLayers; i++) {
      const p = `${prefix}.encoder.layer.${i}`;
      add(`${p}.attention.self.query`, h, h, true);
      add(`${p}.attention.self.key`, h, h, true);
      add(`${p}.attention.self.value`, h, h, true);
      add(`${p}.attention.output.dense`, h, h, true);
      add(`${p}.intermediate.dense`, inter, h, true);
      add(`${p}.output.dense`, h, inter, true);
    }
    if (prefix === 'bert' && opts.bertPooler !== false) add('bert.pooler.dense', h, h, true);
  } else {
    const q = config.numHeads * config.headDim;
    const kv = config.numKvHeads * config.headDim;
    const qkvBias = config.attentionBias;
    const oBias = config.modelType === 'qwen2' ? false : config.attentionBias;
    for (let i = 0; i < numLayers; i++) {
      const p = `model.layers.${i}`;
      add(`${p}.self_attn.q_proj`, q, h, qkvBias);
      add(`${p}.self_attn.k_proj`, kv, h, qkvBias);
      add(`${p}.self_attn.v_proj`, kv, h, qkvBias);
      add(`${p}.self_attn.o_proj`, h, q, oBias);
      add(`${p}.mlp.gate_proj`, inter, h, config.mlpBias);
      add(`${p}.mlp.up_proj`, inter, h, config.mlpBias);
      add(`${p}.mlp.down_proj`, h, inter, config.mlpBias);
    }
  }
  return modules;
}

/** Parameters of the model from config.json alone (see the file comment for what is counted). */
export function baseParamsFromConfig(config: ModelConfig): number {
  if (config.modelType === 'use_lite') return useLiteParamCount(config);
  const h = config.hiddenSize;
  const linear = linearModulesOf(config, { bertPooler: false })
    .reduce((sum, m) => sum + m.outFeatures * m.inFeatures + (m.hasBias ? m.outFeatures : 0), 0);
  if (config.kind === 'encoder') {
    const embeddings = (config.vocabSize + config.maxPositionEmbeddings + config.typeVocabSize) * h + 2 * h;
    const layerNorms = config.numLayers * 2 * 2 * h; // attention.output.LayerNorm and output.LayerNorm
    const pooler = h * h + h;
    return embeddings + linear + layerNorms + pooler;
  }
  const embeddings = config.vocabSize * h;
  const norms = config.numLayers * 2 * h + h; // input/post-attention RMSNorms, final norm
  const lmHead = config.tieWordEmbeddings ? 0 : config.vocabSize * h;
  return embeddings + linear + norms + lmHead;
}

/**
 * config.json -> ModelConfig, for the families the engine runs: BERT, RoBERTa (encoders) and Llama,
 * Mistral, Qwen2, Gemma (decoders; `gemma` only, Gemma 2/3 differ in architecture and are refused).
 * Reads both the keys of transformers v4 (`rope_theta` + `rope_scaling`, `torch_dtype`) and those of v5
 * (`rope_parameters`, `dtype`). Missing optional keys take the defaults of transformers' config classes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LoraxsError, type SourcePlace } from '../errors';
import type { ModelConfig, ModelType, RopeScaling } from '../models/types';

export const SUPPORTED_MODEL_TYPES: readonly ModelType[] = ['bert', 'roberta', 'llama', 'mistral', 'qwen2', 'gemma', 'use_lite'];

/** transformers' defaults for the keys that differ between families. */
interface FamilyDefaults {
  kind: 'encoder' | 'decoder';
  maxPositionEmbeddings: number;
  hiddenAct: string;
  normEps: number;
  tieWordEmbeddings: boolean;
  typeVocabSize: number;
  padTokenId: number | null;
  bosTokenId: number | null;
  eosTokenId: number | null;
}

const DEFAULTS: Record<ModelType, FamilyDefaults> = {
  // BertConfig / RobertaConfig: tie_word_embeddings comes from PretrainedConfig (true); it only matters for MLM heads.
  bert: { kind: 'encoder', maxPositionEmbeddings: 512, hiddenAct: 'gelu', normEps: 1e-12, tieWordEmbeddings: true, typeVocabSize: 2, padTokenId: 0, bosTokenId: null, eosTokenId: null },
  roberta: { kind: 'encoder', maxPositionEmbeddings: 512, hiddenAct: 'gelu', normEps: 1e-12, tieWordEmbeddings: true, typeVocabSize: 2, padTokenId: 1, bosTokenId: 0, eosTokenId: 2 },
  llama: { kind: 'decoder', maxPositionEmbeddings: 2048, hiddenAct: 'silu', normEps: 1e-6, tieWordEmbeddings: false, typeVocabSize: 0, padTokenId: null, bosTokenId: 1, eosTokenId: 2 },
  mistral: { kind: 'decoder', maxPositionEmbeddings: 4096 * 32, hiddenAct: 'silu', normEps: 1e-6, tieWordEmbeddings: false, typeVocabSize: 0, padTokenId: null, bosTokenId: 1, eosTokenId: 2 },
  qwen2: { kind: 'decoder', maxPositionEmbeddings: 32768, hiddenAct: 'silu', normEps: 1e-6, tieWordEmbeddings: false, typeVocabSize: 0, padTokenId: null, bosTokenId: null, eosTokenId: null },
  gemma: { kind: 'decoder', maxPositionEmbeddings: 8192, hiddenAct: 'gelu_pytorch_tanh', normEps: 1e-6, tieWordEmbeddings: true, typeVocabSize: 0, padTokenId: 0, bosTokenId: 2, eosTokenId: 1 },
  // Universal Sentence Encoder lite (models/use_lite_layout.ts), as `loraxs import use-lite` writes it.
  use_lite: { kind: 'encoder', maxPositionEmbeddings: 128, hiddenAct: 'relu', normEps: 1e-6, tieWordEmbeddings: false, typeVocabSize: 0, padTokenId: 0, bosTokenId: null, eosTokenId: null },
};

const ROPE_TYPES: readonly RopeScaling['ropeType'][] = ['default', 'linear', 'dynamic', 'llama3'];

/** Reads `<dir>/config.json`. */
export function readModelConfig(dir: string): ModelConfig {
  const file = path.join(dir, 'config.json');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new LoraxsError(`no config.json in ${dir}: a Hugging Face model folder needs config.json, the weights (*.safetensors) and tokenizer.json`, { file });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new LoraxsError(`config.json is not valid JSON: ${(e as Error).message}`, { file });
  }
  return parseModelConfig(raw, file, text);
}

/**
 * Normalises a parsed config.json. `text`, when given, is the file's text, used only to point errors at
 * the line of the offending key.
 */
export function parseModelConfig(raw: unknown, file: string, text?: string): ModelConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new LoraxsError('config.json must be a JSON object', { file });
  }
  const r = new ConfigReader(raw as Record<string, unknown>, file, text);
  const modelType = r.modelType();
  const d = DEFAULTS[modelType];
  const isEncoder = d.kind === 'encoder';

  const hiddenSize = r.positiveInt('hidden_size');
  const numHeads = r.positiveInt('num_attention_heads');
  const numKvHeads = isEncoder ? numHeads : r.optionalPositiveInt('num_key_value_heads') ?? numHeads;
  const explicitHeadDim = isEncoder ? null : r.optionalPositiveInt('head_dim');
  if (explicitHeadDim === null && hiddenSize % numHeads !== 0) {
    r.fail('hidden_size', `hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads}`);
  }
  const headDim = explicitHeadDim ?? hiddenSize / numHeads;
  if (numHeads % numKvHeads !== 0) {
    r.fail('num_key_value_heads', `num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  }

  const hiddenAct = modelType === 'gemma'
    ? r.optionalString('hidden_activation') ?? 'gelu_pytorch_tanh' // GemmaMLP ignores hidden_act
    : r.optionalString('hidden_act') ?? d.hiddenAct;

  const { ropeTheta, ropeScaling } = isEncoder ? { ropeTheta: 0, ropeScaling: null } : r.rope();
  const id2label = r.id2label();
  const numLabels = id2label ? Object.keys(id2label).length : r.optionalPositiveInt('num_labels');

  return {
    modelType,
    kind: d.kind,
    hiddenSize,
    numLayers: r.positiveInt('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize: r.positiveInt('intermediate_size'),
    vocabSize: r.positiveInt('vocab_size'),
    maxPositionEmbeddings: r.optionalPositiveInt('max_position_embeddings') ?? d.maxPositionEmbeddings,
    normEps: r.optionalNumber(isEncoder ? 'layer_norm_eps' : 'rms_norm_eps') ?? d.normEps,
    hiddenAct,
    typeVocabSize: isEncoder ? r.optionalNonNegativeInt('type_vocab_size') ?? d.typeVocabSize : 0,
    padTokenId: r.optionalTokenId('pad_token_id', d.padTokenId),
    bosTokenId: r.optionalTokenId('bos_token_id', d.bosTokenId),
    eosTokenId: r.eosTokenId(d.eosTokenId),
    hiddenDropout: isEncoder ? r.probability('hidden_dropout_prob') ?? 0.1 : 0,
    attentionDropout: isEncoder ? r.probability('attention_probs_dropout_prob') ?? 0.1 : r.probability('attention_dropout') ?? 0,
    classifierDropout: r.probability('classifier_dropout'),
    ropeTheta,
    ropeScaling,
    attentionBias: attentionBias(modelType, r),
    mlpBias: isEncoder || (modelType === 'llama' && (r.optionalBoolean('mlp_bias') ?? false)),
    tieWordEmbeddings: r.optionalBoolean('tie_word_embeddings') ?? d.tieWordEmbeddings,
    dtype: r.dtype(),
    numLabels,
    id2label,
    raw: raw as Record<string, unknown>,
  };
}

/**
 * Encoders: every linear layer has a bias. Qwen2: q/k/v have biases, o_proj none (always, whatever the
 * config says). Mistral: none. Llama and Gemma: `attention_bias` (q/k/v and o_proj alike), default false.
 */
function attentionBias(modelType: ModelType, r: ConfigReader): boolean {
  switch (modelType) {
    case 'bert': case 'roberta': case 'qwen2': case 'use_lite': return true;
    case 'mistral': return false;
    case 'llama': case 'gemma': return r.optionalBoolean('attention_bias') ?? false;
  }
}

/** Typed access to config.json keys; every error names the file and the key (with its line when known). */
class ConfigReader {
  constructor(readonly raw: Record<string, unknown>, readonly file: string, readonly text?: string) {}

  place(key: string): SourcePlace {
    const place: SourcePlace = { file: this.file, detail: key };
    const top = key.split('.')[0];
    const at = this.text?.indexOf(`"${top}"`) ?? -1;
    if (this.text && at >= 0) {
      const before = this.text.slice(0, at);
      place.line = before.split('\n').length;
      place.column = at - before.lastIndexOf('\n');
    }
    return place;
  }

  fail(key: string, message: string): never {
    throw new LoraxsError(`config.json: ${message}`, this.place(key));
  }

  get(key: string): unknown {
    return this.raw[key];
  }

  modelType(): ModelType {
    const t = this.get('model_type');
    if (typeof t !== 'string') this.fail('model_type', `key 'model_type' is missing or not a string (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`);
    if (!(SUPPORTED_MODEL_TYPES as readonly string[]).includes(t)) {
      this.fail('model_type', `model_type '${t}' is not supported (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`);
    }
    return t as ModelType;
  }

  positiveInt(key: string): number {
    const v = this.get(key);
    if (v === undefined || v === null) this.fail(key, `key '${key}' is missing`);
    if (!Number.isSafeInteger(v) || (v as number) <= 0) this.fail(key, `key '${key}' must be a positive integer, got ${JSON.stringify(v)}`);
    return v as number;
  }

  optionalPositiveInt(key: string): number | null {
    const v = this.get(key);
    return v === undefined || v === null ? null : this.positiveInt(key);
  }

  optionalNonNegativeInt(key: string): number | null {
    const v = this.get(key);
    if (v === undefined || v === null) return null;
    if (!Number.isSafeInteger(v) || (v as number) < 0) this.fail(key, `key '${key}' must be a non-negative integer, got ${JSON.stringify(v)}`);
    return v as number;
  }

  optionalNumber(key: string, obj: Record<string, unknown> = this.raw, label = key): number | null {
    const v = obj[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(label, `key '${label}' must be a number, got ${JSON.stringify(v)}`);
    return v;
  }

  probability(key: string): number | null {
    const v = this.optionalNumber(key);
    if (v !== null && (v < 0 || v >= 1)) this.fail(key, `key '${key}' must be a dropout probability in [0, 1), got ${v}`);
    return v;
  }

  optionalString(key: string): string | null {
    const v = this.get(key);
    if (v === undefined || v === null) return null;
    if (typeof v !== 'string') this.fail(key, `key '${key}' must be a string, got ${JSON.stringify(v)}`);
    return v;
  }

  optionalBoolean(key: string): boolean | null {
    const v = this.get(key);
    if (v === undefined || v === null) return null;
    if (typeof v !== 'boolean') this.fail(key, `key '${key}' must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  optionalTokenId(key: string, dflt: number | null): number | null {
    if (!(key in this.raw)) return dflt;
    return this.optionalNonNegativeInt(key);
  }

  eosTokenId(dflt: number | null): number | number[] | null {
    const v = this.get('eos_token_id');
    if (v === undefined) return dflt;
    if (Array.isArray(v)) {
      if (!v.every((x) => Number.isSafeInteger(x) && x >= 0)) this.fail('eos_token_id', `key 'eos_token_id' must be a token id or a list of them, got ${JSON.stringify(v)}`);
      return [...v] as number[];
    }
    return this.optionalNonNegativeInt('eos_token_id');
  }

  dtype(): string {
    const v5 = this.optionalString('dtype');
    return v5 ?? this.optionalString('torch_dtype') ?? 'float32';
  }

  id2label(): Record<string, string> | null {
    const v = this.get('id2label');
    if (v === undefined || v === null) return null;
    if (typeof v !== 'object' || Array.isArray(v)) this.fail('id2label', `key 'id2label' must be an object {"0": "label", ...}, got ${JSON.stringify(v)}`);
    const out: Record<string, string> = {};
    for (const [k, label] of Object.entries(v as Record<string, unknown>)) {
      if (!/^\d+$/.test(k)) this.fail('id2label', `id2label key '${k}' must be a class index`);
      if (typeof label !== 'string') this.fail('id2label', `id2label['${k}'] must be a string, got ${JSON.stringify(label)}`);
      out[k] = label;
    }
    return out;
  }

  /**
   * v5: `rope_parameters: {rope_type, rope_theta, factor, ...}`; v4: `rope_theta` + `rope_scaling:
   * {rope_type | type, factor, ...}`. The default rope type gives `ropeScaling: null`.
   */
  rope(): { ropeTheta: number; ropeScaling: RopeScaling | null } {
    const params = this.get('rope_parameters');
    let key: string;
    let scaling: Record<string, unknown> | null;
    let theta: number | null;
    if (params !== undefined && params !== null) {
      key = 'rope_parameters';
      if (typeof params !== 'object' || Array.isArray(params)) this.fail(key, `key '${key}' must be an object, got ${JSON.stringify(params)}`);
      scaling = params as Record<string, unknown>;
      theta = this.optionalNumber('rope_theta', scaling, `${key}.rope_theta`) ?? this.optionalNumber('rope_theta');
    } else {
      key = 'rope_scaling';
      const s = this.get(key);
      if (s !== undefined && s !== null && (typeof s !== 'object' || Array.isArray(s))) this.fail(key, `key '${key}' must be an object or null, got ${JSON.stringify(s)}`);
      scaling = (s ?? null) as Record<string, unknown> | null;
      theta = this.optionalNumber('rope_theta');
    }
    const ropeTheta = theta ?? 10000;
    if (ropeTheta <= 0) this.fail('rope_theta', `rope_theta must be positive, got ${ropeTheta}`);
    if (!scaling) return { ropeTheta, ropeScaling: null };
    const type = scaling.rope_type ?? scaling.type ?? 'default';
    if (typeof type !== 'string' || !(ROPE_TYPES as readonly string[]).includes(type)) {
      this.fail(`${key}.rope_type`, `${key}.rope_type ${JSON.stringify(type)} is not supported (supported: ${ROPE_TYPES.join(', ')})`);
    }
    if (type === 'default') return { ropeTheta, ropeScaling: null };
    const num = (k: string): number | undefined => this.optionalNumber(k, scaling, `${key}.${k}`) ?? undefined;
    const ropeScaling: RopeScaling = { ropeType: type as RopeScaling['ropeType'] };
    const factor = num('factor');
    if (factor === undefined || factor <= 0) this.fail(`${key}.factor`, `${key}.factor must be a positive number for rope_type '${type}', got ${JSON.stringify(scaling.factor)}`);
    ropeScaling.factor = factor;
    if (type === 'llama3') {
      for (const k of ['low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings']) {
        if (num(k) === undefined) this.fail(`${key}.${k}`, `${key}.${k} is required for rope_type 'llama3'`);
      }
      ropeScaling.lowFreqFactor = num('low_freq_factor');
      ropeScaling.highFreqFactor = num('high_freq_factor');
    }
    const original = num('original_max_position_embeddings');
    if (original !== undefined) ropeScaling.originalMaxPositionEmbeddings = original;
    return { ropeTheta, ropeScaling };
  }
}

import type * as tf from '@tensorflow/tfjs';

/** The model families the engine runs; any other `model_type` is refused by name. */
export type ModelType = 'bert' | 'roberta' | 'llama' | 'mistral' | 'qwen2' | 'gemma' | 'use_lite';

/** Rope scaling as transformers reads it (`rope_scaling` before v5, `rope_parameters` in v5). */
export interface RopeScaling {
  ropeType: 'default' | 'linear' | 'dynamic' | 'llama3';
  factor?: number;
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositionEmbeddings?: number;
}

/** config.json normalised across families and transformers versions. */
export interface ModelConfig {
  modelType: ModelType;
  /** Whether the family is an encoder (BERT/RoBERTa) or a decoder (Llama family). */
  kind: 'encoder' | 'decoder';
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  /** LayerNorm eps (encoders) or RMSNorm eps (decoders). */
  normEps: number;
  /** `gelu`, `gelu_new`, `gelu_pytorch_tanh`, `relu`, `silu`, ... as in config.json. */
  hiddenAct: string;
  /** Encoders only. */
  typeVocabSize: number;
  padTokenId: number | null;
  bosTokenId: number | null;
  eosTokenId: number | number[] | null;
  hiddenDropout: number;
  attentionDropout: number;
  classifierDropout: number | null;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  /** Qwen2: biases on q/k/v; Llama `attention_bias`. */
  attentionBias: boolean;
  mlpBias: boolean;
  tieWordEmbeddings: boolean;
  /** Source dtype of the weights (`float32`, `float16`, `bfloat16`). */
  dtype: string;
  numLabels: number | null;
  id2label: Record<string, string> | null;
  /** The parsed config.json as it is on disk, for writing merged models back. */
  raw: Record<string, unknown>;
}

/** Base weights under canonical names (those of transformers' task classes), float32. */
export type Weights = Map<string, tf.Tensor>;

/** One linear layer a LoRA-XS target can adapt. */
export interface LinearModule {
  /** Canonical module name, e.g. `roberta.encoder.layer.0.attention.self.query`, `model.layers.0.self_attn.q_proj`. */
  name: string;
  /** W is (outFeatures × inFeatures), as torch.nn.Linear stores it. */
  outFeatures: number;
  inFeatures: number;
  hasBias: boolean;
}

/**
 * What a forward pass needs besides the weights: every linear layer goes through `linear`, so LoRA-XS
 * adapters (or ablations) apply without the model code knowing about them.
 */
export interface ForwardContext {
  /** x (..., in) -> (..., out): x Wᵀ + b (+ the adapter's update when the module is adapted). */
  linear(name: string, x: tf.Tensor): tf.Tensor;
  /** Dropout with this rate in training mode; identity in evaluation. */
  dropout(x: tf.Tensor, rate: number): tf.Tensor;
  training: boolean;
  /**
   * Training with `compute.gradient_checkpointing`: backbones run each block through checkpointedBlock
   * (models/checkpointed_block.ts), which recomputes its activations in the backward pass.
   */
  gradientCheckpointing?: boolean;
  /** The seed `dropout` would draw next (consumed): checkpointed blocks replay the same masks. */
  nextDropoutSeed?(): number;
  /** The trainable variables that these linear modules read (adapters' R, trainable head tensors). */
  trainableOf?(moduleNames: string[]): tf.Variable[];
}

export interface ForwardInputs {
  /** (B, T) int32 */
  inputIds: tf.Tensor2D;
  /** (B, T) int32, 1 for real tokens, 0 for padding (right padding). */
  attentionMask: tf.Tensor2D;
  /** (B, T) int32, encoders only (sentence A = 0, B = 1). */
  tokenTypeIds?: tf.Tensor2D;
}

/**
 * Keys and values of the positions a decoder has already seen, per layer (B, kvHeads, length, D), for
 * incremental decoding. Made by `Backbone.createKvCache`, filled by `forwardCached`; `dispose` frees it.
 */
export interface KvCache {
  /** Positions held (the next token's position). */
  readonly length: number;
  dispose(): void;
}

/** A backbone: the transformer without its task head. */
export interface Backbone {
  config: ModelConfig;
  weights: Weights;
  /** Linear layers in forward order. */
  linearModules(): LinearModule[];
  /** Last hidden states (B, T, H), after the final norm for decoders. */
  forward(inputs: ForwardInputs, ctx: ForwardContext): tf.Tensor3D;
  /** Decoders: an empty KV cache for `forwardCached`. */
  createKvCache?(): KvCache;
  /**
   * Decoders, evaluation only: the last hidden states (B, t, H) of `t` new tokens (B, t) that follow the
   * cache's positions, with no padding; their keys and values are appended to the cache. The same numbers
   * as `forward` on the whole sequence (up to float rounding), in time that does not grow with the prefix
   * beyond the attention over it.
   */
  forwardCached?(inputIds: tf.Tensor2D, cache: KvCache, ctx: ForwardContext): tf.Tensor3D;
}

/**
 * Defaults of the run configuration, in RunConfig's camelCase form. The JSON Schema
 * (loraxs.schema.json) states the same values as `default`s for hover and completion; a test checks
 * that the two agree. Defaults that depend on other keys are functions here:
 *   adapter.alpha    = adapter.rank (scale alpha/r = 1)
 *   training.head_lr = training.lr
 *   adapter.targets  = the family's attention query and value projections
 *   output           = runs/<config name>, relative to the config file
 *   task             = causal-lm with prompt/response data or a decoder model, else classification
 */
import * as path from 'node:path';
import type { AdapterConfig, SvdConfig, TrainingConfig } from './types';

/** Settings of the singular-value analyses (`analysis:`; issue 5). Not part of RunConfig's core. */
export interface AnalysisConfig {
  /** Fractions f of the singular values kept, each in [0, 1]. */
  fractions: number[];
  regions: Array<'top' | 'middle' | 'bottom'>;
  /** Validation examples evaluated per ablation. */
  evalLimit: number;
  /** Seeds per setting in initialisation and rank comparisons. */
  seeds: number;
}

export const SVD_DEFAULTS: Readonly<SvdConfig> = Object.freeze({
  method: 'randomized',
  oversamples: 10,
  powerIters: 7,
});

/** Adapter defaults except `alpha` (= rank) and `targets` (per family). */
export const ADAPTER_DEFAULTS: Readonly<Omit<AdapterConfig, 'alpha' | 'targets' | 'svd' | 'rankPattern'>> =
  Object.freeze({
    rank: 16,
    init: 'svd',
    initStd: 1e-5,
    factorSeed: 0,
  });

/** Training defaults except `headLr` (= lr). */
export const TRAINING_DEFAULTS: Readonly<Omit<TrainingConfig, 'headLr'>> = Object.freeze({
  epochs: 20,
  batchSize: 32,
  gradAccumSteps: 1,
  optimizer: 'adamw',
  lr: 1e-3,
  weightDecay: 0,
  warmupRatio: 0.06,
  schedule: 'linear',
  maxGradNorm: 1.0,
  maxLength: 128,
  dropout: null,
  shuffle: true,
  seed: 0,
  evalEvery: 'epoch',
});

export const ANALYSIS_DEFAULTS: Readonly<AnalysisConfig> = Object.freeze<AnalysisConfig>({
  fractions: [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0],
  regions: ['top', 'middle', 'bottom'],
  evalLimit: 256,
  seeds: 3,
});

/** Default LoRA-XS targets: the attention query and value projections, named as each family names them. */
export const DEFAULT_TARGETS: Readonly<Record<'encoder' | 'decoder', readonly string[]>> = Object.freeze({
  encoder: ['query', 'value'],
  decoder: ['q_proj', 'v_proj'],
});

/** Default targets of families whose module names differ from their kind's (USE-lite: its five linear module types; the demo and the benches use them too). */
export const DEFAULT_TARGETS_BY_MODEL_TYPE: Readonly<Record<string, readonly string[]>> = Object.freeze({
  use_lite: ['qkv', 'attention.output', 'residual_proj', 'ffn.intermediate', 'ffn.output'],
});

/** The default `adapter.targets` of a model family. */
export function defaultTargetsFor(modelType: string, kind: 'encoder' | 'decoder'): string[] {
  return [...(DEFAULT_TARGETS_BY_MODEL_TYPE[modelType] ?? DEFAULT_TARGETS[kind])];
}

/** Model types (config.json `model_type`) that are decoders; bert, roberta and use_lite are encoders. */
export const DECODER_MODEL_TYPES: readonly string[] = ['llama', 'mistral', 'qwen2', 'gemma'];
export const ENCODER_MODEL_TYPES: readonly string[] = ['bert', 'roberta', 'use_lite'];

/** The config's name without `.loraxs.yaml` (or `.yaml` / `.yml`): `sst2.loraxs.yaml` -> `sst2`. */
export function configStem(file: string): string {
  const base = path.basename(file);
  for (const suffix of ['.loraxs.yaml', '.loraxs.yml', '.yaml', '.yml']) {
    if (base.toLowerCase().endsWith(suffix)) return base.slice(0, base.length - suffix.length);
  }
  return base;
}

/** Default output folder: `runs/<config stem>` beside the config file (absolute). */
export function defaultOutput(file: string): string {
  return path.join(path.dirname(path.resolve(file)), 'runs', configStem(file));
}

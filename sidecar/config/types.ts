/**
 * The run configuration after parsing and validation (`*.loraxs.yaml`). Paths are absolute (resolved
 * against the config file's folder). Defaults are filled in by config/parse.ts; the comments give them.
 */
export type Task = 'classification' | 'regression' | 'causal-lm';
import type { InitKind } from '../records';
export type { InitKind };

export interface DataConfig {
  train: string;
  validation: string | null;
  /** Column names for files without a header row. */
  columns: string[] | null;
  /** One field, or two for sentence pairs; causal-lm: the text field (or null with prompt/response). */
  text: string | [string, string] | null;
  prompt: string | null;
  response: string | null;
  /** Classification / regression target field. */
  label: string | null;
}

export interface SvdConfig {
  /** `randomized` (Halko et al., default) or `exact`. svd-bottom always uses exact. */
  method: 'randomized' | 'exact';
  /** Extra random directions beyond r (default 10). */
  oversamples: number;
  /** Power iterations (default 4). */
  powerIters: number;
}

export interface AdapterConfig {
  rank: number; // default 16
  rankPattern: Record<string, number>; // default {}
  alpha: number; // default = rank
  targets: string[]; // default: the family's attention projections
  init: InitKind; // default svd
  initStd: number; // default 1e-5
  svd: SvdConfig;
}

export interface TrainingConfig {
  epochs: number; // 20
  batchSize: number; // 32
  gradAccumSteps: number; // 1
  optimizer: 'adamw' | 'sgd'; // adamw
  lr: number; // 1e-3
  headLr: number; // = lr
  weightDecay: number; // 0
  warmupRatio: number; // 0.06
  schedule: 'linear' | 'cosine' | 'constant'; // linear
  maxGradNorm: number; // 1.0; 0 disables
  maxLength: number; // 128
  dropout: number | null; // null: the model's own
  shuffle: boolean; // true
  seed: number; // 0
  evalEvery: 'epoch' | number; // epoch
}

export interface RunConfig {
  /** Absolute path of the config file. */
  file: string;
  model: string;
  task: Task;
  data: DataConfig | null;
  adapter: AdapterConfig;
  training: TrainingConfig;
  output: string;
}

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
  /** causal-lm: a field of OpenAI-style message lists, rendered with the chat template (loss on assistant turns). */
  messages?: string | null;
  /** The chat template: the template text, or a .jinja / tokenizer_config.json file (absolute); null: the model's. */
  chatTemplate?: string | null;
  /** Sentence pairs: `cross` or `bi`; null/absent: the model family's default (session/pair_mode.ts). */
  pairMode?: 'cross' | 'bi' | null;
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
  /**
   * Seed of the frozen factors' random draws (randomized SVD, random inits), independent of training.seed so
   * adapters of one base, rank, init and SVD settings share factors (default 0).
   */
  factorSeed?: number;
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
  evalEvery: 'epoch' | 'end' | number; // epoch
  /** Evaluate the starting point as step 0; absent: true. */
  evalAtStart?: boolean;
  /** causal-lm: generate for validation prompts and score exact match of the extracted answer; null: off. */
  evalGenerate?: EvalGenerateConfig | null;
}

export interface EvalGenerateConfig {
  /** New tokens per validation prompt. */
  maxTokens: number;
  /** `gsm8k` (the number after `####`) or a regex whose first group (else whole match) is the answer. */
  answerPattern: string;
  /** Validation rows scored at most (default: all). */
  limit: number | null;
}

/** A hub id from `model:` with its `revision:` (null: `main`); `commit` once resolved. */
export interface HubModelRef {
  id: string;
  revision: string | null;
  /** The commit the revision resolved to (set by the engine when it resolves the id). */
  commit?: string;
}

export interface RunConfig {
  /** Absolute path of the config file. */
  file: string;
  /**
   * The model folder (absolute). For a hub id (`hubModel` set) it is the id itself until the engine
   * resolves it (engine/model_source.ts), then the snapshot folder in the Hugging Face cache.
   */
  model: string;
  /** Set when `model:` is a Hugging Face hub id rather than a folder on disk. */
  hubModel?: HubModelRef | null;
  task: Task;
  data: DataConfig | null;
  adapter: AdapterConfig;
  training: TrainingConfig;
  /** `adapter: none`: train only the classification / regression head (a baseline). */
  headOnly?: boolean;
  output: string;
  /** The `compute:` section, when the config has one (its missing keys filled in by parse.ts). */
  compute?: ComputeConfig;
}

/** `compute:`: the engine's backends or PyTorch + Accelerate through `loraxs launch`. */
export interface ComputeConfig {
  backend: 'auto' | 'wasm' | 'tensorflow' | 'torch'; // auto
  /** The trainer's Python (absolute); null: the repository's .venv-trainer, else python3. */
  python: string | null;
  processes: number; // 1
  mixedPrecision: 'no' | 'bf16' | 'fp16'; // no
  gradientCheckpointing: boolean; // false
  /** GB the engine may use (backend/memory_budget.ts); absent: $LORAXS_MEMORY_BUDGET_GB, else 85 % of the machine's. */
  memoryBudgetGb?: number;
}

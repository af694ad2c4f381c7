/**
 * The records the engine writes and every reader imports: the lines of `<output>/metrics.jsonl` (updates,
 * evaluations, the best evaluation), the events a job emits while it runs (the CLI draws them on stderr,
 * the sidecar sends them as notifications, the training panel applies them), what a job resolves to, and
 * the reports of `params`, the analyses and `export`. Types, constants and type guards only: this module imports
 * nothing, so the protocol, the extension and the webviews can use it without pulling in the engine.
 *
 * The metrics.jsonl line format is also published as a JSON Schema, `metrics_line.schema.json` beside
 * this file; tests validate every line the engine writes against it.
 */

// ---------------------------------------------------------------------------------------------------
// metrics.jsonl

export interface StepRecord {
  /** Optimizer update number, from 1. */
  step: number;
  /** Epoch, from 1. */
  epoch: number;
  /** That batch's training loss before the update (mean over its accumulated micro-batches). */
  loss: number;
  /** Learning rate used for this update (the adapter's; the head's is head_lr times the same multiplier). */
  lr: number;
  tokens_per_s: number;
  grad_norm?: number;
  /** Updates in the whole run, for ETA. */
  total_steps?: number;
  /** Seconds since training started in this process (after the model loaded; a resumed run counts from the resume). */
  elapsed_s?: number;
  /** Estimated seconds to the last update: this process's seconds per update so far (evaluations included) × updates left. */
  eta_s?: number;
  /** `loraxs launch`: the processes that trained this update (tokens_per_s is their total). */
  processes?: number;
  /** `loraxs launch`: the processes' device (cpu, cuda:<name>). */
  device?: string;
}

export interface EvalRecord {
  step: number;
  epoch: number;
  eval: Record<string, number>;
}

/**
 * Written after the evaluation it names whenever an evaluation becomes the best so far: the run's best
 * is the last such line. `metric` is the one the engine ranks by (accuracy, pearson, loss).
 */
export interface BestRecord {
  step: number;
  epoch: number;
  best: { metric: string; value: number; higher_is_better: boolean };
}

/** An evaluation line: `baseline` marks the step-0 evaluation before any update. */
export type EvalLine = EvalRecord & { baseline?: boolean };

/** One line of `<output>/metrics.jsonl`. */
export type MetricsRecord = StepRecord | EvalLine | BestRecord;

export function isStepRecord(r: MetricsRecord): r is StepRecord {
  return 'loss' in r;
}

export function isEvalRecord(r: MetricsRecord): r is EvalLine {
  return 'eval' in r;
}

export function isBestRecord(r: MetricsRecord): r is BestRecord {
  return 'best' in r && typeof (r as BestRecord).best === 'object' && (r as BestRecord).best !== null;
}

// ---------------------------------------------------------------------------------------------------
// Jobs: what runs, what it emits, what it resolves to

export type InitKind = 'svd' | 'svd-no-sigma' | 'svd-bottom' | 'random' | 'svd-of-random';
export type Region = 'top' | 'middle' | 'bottom';
export type ExportFormat = 'peft-lora' | 'loraxs-official' | 'loraxs-factors';
export const EXPORT_FORMATS: readonly ExportFormat[] = ['peft-lora', 'loraxs-official', 'loraxs-factors'];

/**
 * Everything a job emits, in order. The CLI draws these on stderr; the sidecar sends each one as the
 * payload of a progress notification (with the run id) and the extension hands it to the panel as is.
 */
export type JobEvent =
  /** The job has loaded its config and begins its stage (first event of every job that has a config). */
  | { kind: 'started'; job: 'train' | 'merge' | 'export' | 'ablate' | 'eval'; config: string | null; output: string | null }
  | { kind: 'log'; message: string }
  /** A long phase (loading, SVD, evaluation) advanced: done of total units. */
  | { kind: 'phase'; phase: string; done: number; total: number }
  | { kind: 'step'; record: StepRecord }
  /** `best`: this evaluation is the best so far (metrics.jsonl has a BestRecord for it too). */
  | { kind: 'eval'; record: EvalRecord; best: boolean }
  /** One measured ablation cell (retention, delta). */
  | { kind: 'row'; row: AblationRow }
  /** One finished comparison training (init). */
  | { kind: 'run'; run: InitRun };

/** How engine stages report: one callback per event kind (see engine/events.ts for the sinks). */
export interface EngineEvents {
  log?(message: string): void;
  /** A long phase (loading, SVD, evaluation) advanced: done of total units. */
  progress?(phase: string, done: number, total: number): void;
  step?(record: StepRecord): void;
  eval?(record: EvalRecord, best: boolean): void;
  /** An analysis measured one ablation cell. */
  row?(row: AblationRow): void;
  /** An init comparison finished one training. */
  run?(run: InitRun): void;
}

export interface TrainResult {
  output: string;
  /** Where the best (or, without validation data, the last) adapter is. */
  adapterDir: string;
  steps: number;
  totalSteps: number;
  cancelled: boolean;
  best: EvalRecord | null;
  trainableParams: number;
  adapterParams: number;
  adapterBytes: number;
  seconds: number;
}

/** What `loraxs launch` resolves to: the command it ran (a dry run: printed) and, when it ran, the training's result. */
export interface LaunchResult {
  output: string;
  dryRun: boolean;
  command: string[];
  accelerateConfigFile: string;
  /** Dry run: the command line and the Accelerate config file's text. */
  text?: string;
  /** Processes on all machines, and what they run on (cpu, cuda). */
  processes: number;
  device: 'cpu' | 'cuda';
  /** The training's result as `train` reports it (absent for a dry run). */
  train?: TrainResult;
}

/** What a job resolves to: a TrainResult for `train`, the output folder for merge and export, the report of an analysis, the metrics of an evaluation. */
export type JobResult = { kind: 'train'; result: TrainResult } | { kind: 'folder'; outDir: string } | { kind: 'analysis'; report: AnalysisReport }
  | { kind: 'metrics'; metrics: Record<string, number> } | { kind: 'launch'; result: LaunchResult };

// ---------------------------------------------------------------------------------------------------
// Reports: params, analyses

/** One target key's share: the modules whose longest matching key it is. */
export interface ModuleTypeParams {
  count: number;
  /** Distinct ranks of these modules, ascending. */
  ranks: number[];
  loraxs: number;
  lora: number;
  vera: number;
  /** Distinct [d_out, d_in] of these modules. */
  dims: Array<[number, number]>;
}

/** The estimate behind trainingMemoryBytes (see estimateTrainingMemory). */
export interface TrainingMemoryEstimate {
  batchSize: number;
  maxLength: number;
  weightsBytes: number;
  factorBytes: number;
  trainableStateBytes: number;
  activationBytes: number;
  totalBytes: number;
}

export interface ParamsReport {
  /** Number of adapted modules. */
  modules: number;
  /** Σ r². */
  loraxs: number;
  /** Σ r (d_in + d_out). */
  lora: number;
  /** Σ (d_out + r). */
  vera: number;
  /** Unique parameters of the base model, tied weights counted once. */
  baseParams: number;
  /** 4 · Σ r². */
  adapterBytes: number;
  /** Where baseParams comes from. */
  baseParamsFrom: 'safetensors' | 'config.json';
  modelType: string;
  /** The targets used (the config's, the override, or the family's default). */
  targets: string[];
  /** Per target key, in `targets` order. */
  perModuleType: Record<string, ModuleTypeParams>;
  trainingMemoryBytes: number;
  trainingMemory: TrainingMemoryEstimate;
  /** The task counted (the config's, else classification for encoders, causal-lm for decoders). */
  task?: 'classification' | 'regression' | 'causal-lm';
  /** The task head's trainable parameters (0 for causal-lm and bi-mode regression). */
  headParams?: number;
  /** loraxs + headParams: what `train` reports as trainable. */
  trainable?: number;
  /** Outputs of the head: classes (the training data's, else config.json's, at least 2), 1 for regression; null for causal-lm. */
  numLabels?: number | null;
  /** Sentence pairs: the pair mode used; null when the data are single texts. */
  pairMode?: 'cross' | 'bi' | null;
}

export type AblationKind = 'retention' | 'delta';

export type AnalysisKind = AblationKind | 'init' | 'spectra';

/** One ablation: a module type (all its layers at once when `layer` is null), a region and a fraction. */
export interface AblationRow {
  module: string;
  layer: number | null;
  region: Region;
  fraction: number;
  value: number;
}

export interface AblationReport {
  kind: AblationKind;
  /** The task metric evaluated (`accuracy`, `pearson`, `loss`). */
  metric: string;
  higherIsBetter: boolean;
  /** The metric of the unablated model under study. */
  baseline: number;
  model: string;
  adapter: string | null;
  /** delta: the base model ΔW is taken against. */
  base: string | null;
  /** Validation examples each value is measured on. */
  evalExamples: number;
  modules: string[];
  layers: number[];
  fractions: number[];
  regions: Region[];
  results: AblationRow[];
  /** True when the sweep was cancelled: `results` holds what was done. */
  cancelled: boolean;
  seconds: number;
}

export interface CurvePoint {
  step: number;
  epoch: number;
  value: number;
}

export interface InitRun {
  init: InitKind;
  rank: number;
  seed: number;
  output: string;
  /** Validation metric after each evaluation; the first point (step 0) is before training. */
  curve: CurvePoint[];
  best: number | null;
  bestEpoch: number | null;
  after1: number | null;
  after2: number | null;
}

export interface InitSummary {
  init: InitKind;
  rank: number;
  runs: number;
  bestMedian: number | null;
  bestStd: number | null;
  after1Median: number | null;
  after1Std: number | null;
  after2Median: number | null;
  after2Std: number | null;
}

export interface InitReport {
  kind: 'init';
  metric: string;
  higherIsBetter: boolean;
  /** Median step-0 metric over all runs (before any update). */
  baseline: number | null;
  model: string;
  inits: InitKind[];
  ranks: number[];
  seeds: number[];
  runs: InitRun[];
  results: InitSummary[];
  cancelled: boolean;
  seconds: number;
}

export interface SpectrumEntry {
  /** Module type (target key). */
  module: string;
  name: string;
  layer: number | null;
  outFeatures: number;
  inFeatures: number;
  /** The rank the config (or the adapter) gives this module. */
  rank: number;
  /** Σ_{i<rank} σ_i² / Σ σ_i² */
  energyAtRank: number;
  /** ‖ΔW‖_F / ‖W‖_F of the adapter, or null without one. */
  deltaRatio: number | null;
  /** Descending. */
  singularValues: number[];
}

export interface SpectraReport {
  kind: 'spectra';
  model: string;
  adapter: string | null;
  modules: string[];
  layers: number[];
  entries: SpectrumEntry[];
  cancelled: boolean;
  seconds: number;
}

export interface AnalysisRequest {
  kind: AnalysisKind;
  /** A saved adapter: merged into the model under study (retention, spectra) or giving ΔW (delta). */
  adapterDir?: string;
  /** delta: the base model ΔW is taken against (default: the config's model, with --adapter). */
  baseDir?: string;
  fractions?: number[];
  regions?: Region[];
  perLayer?: boolean;
  evalLimit?: number;
  /** init: seeds per setting. */
  seeds?: number;
  /** init: initialisations compared (default svd, random, svd-of-random). */
  inits?: InitKind[];
  /** init: ranks compared (default the config's). */
  ranks?: number[];
  /** Module types (target keys) studied; default the config's adapter.targets. */
  targets?: string[];
}

export type AnalysisReport = AblationReport | InitReport | SpectraReport;

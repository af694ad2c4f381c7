/**
 * Which pair mode a run uses for sentence pairs (`data.text: [a, b]`):
 * - `cross`: the two texts joined into one sequence by the tokenizer's post-processor (separators and
 *   token types, as transformers' tokenizer(a, b)); the default for BERT, RoBERTa and decoders.
 * - `bi`: each text embedded alone by the same (adapted) encoder and compared (Sentence-BERT); the
 *   default for sentence encoders (use_lite). Single texts are encoded the same way in both modes.
 */
import type { RunConfig } from './types';
import { modelFamilyOf } from './model_family';

export type PairMode = 'cross' | 'bi';

/** Model types whose default pair mode is `bi` (sentence encoders). */
export const BI_ENCODER_MODEL_TYPES: readonly string[] = ['use_lite'];

/** The default pair mode of a model type. */
export function defaultPairMode(modelType: string | null | undefined): PairMode {
  return modelType && BI_ENCODER_MODEL_TYPES.includes(modelType) ? 'bi' : 'cross';
}

type PairConfig = { task?: RunConfig['task']; model: string; data?: Pick<NonNullable<RunConfig['data']>, 'text' | 'pairMode'> | null };

/**
 * The pair mode a run uses: `bi` only for classification/regression on a pair of texts, when the config
 * says so or (no data.pair_mode) the model family defaults to it; else `cross`. Null when the data are
 * not pairs (or the task is causal-lm). `modelType` saves reading config.json when the caller has it.
 */
export function pairModeOrNull(config: PairConfig, modelType?: string): PairMode | null {
  if (config.task === 'causal-lm' || !config.data || !Array.isArray(config.data.text)) return null;
  if (config.data.pairMode) return config.data.pairMode;
  return defaultPairMode(modelType ?? modelFamilyOf(config.model)?.modelType);
}

/** The pair mode the engine uses: `pairModeOrNull`, with `cross` for single texts. */
export function pairModeOf(config: PairConfig, modelType?: string): PairMode {
  return pairModeOrNull(config, modelType) ?? 'cross';
}

/** For `params` and hover: "bi (each text embedded alone; use_lite's default)", or null for single texts. */
export function describePairMode(config: PairConfig, modelType?: string): string | null {
  const mode = pairModeOrNull(config, modelType);
  if (!mode) return null;
  const type = modelType ?? modelFamilyOf(config.model)?.modelType ?? 'the model';
  const how = mode === 'bi' ? 'each text embedded alone, then compared' : 'the two texts joined with separators';
  return `${mode} (${how}; ${config.data?.pairMode ? 'data.pair_mode' : `${type}'s default`})`;
}

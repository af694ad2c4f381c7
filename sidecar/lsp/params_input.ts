/**
 * What `computeParams` needs, from a config's text: the parsed config when it is valid, else the model,
 * rank, targets and training sizes read leniently from the YAML, so hover and lenses still show numbers
 * while another part of the file has an error.
 */
import * as path from 'node:path';
import { LoraxsError } from '../errors';
import { parseConfigText } from '../config/parse';
import type { ParsedConfig } from '../config/parse';
import { ADAPTER_DEFAULTS, TRAINING_DEFAULTS } from '../config/defaults';
import type { Task } from '../config/types';
import { parseWithPositions } from '../config/yaml_positions';
import type { ParamsInput } from '../loraxs/param_counts';
import { parseModelRef } from '../hub/repo_id';
import { HubModelPending, hubModelState, settleHubModel } from './hub_models';

export interface ConfigForParams {
  input: ParamsInput;
  /** adapter.alpha (default: the rank). */
  alpha: number;
  /** The full config when the text is valid; null when the lenient reading was used. */
  config: ParsedConfig | null;
}

type Raw = Record<string, unknown>;

const isObject = (v: unknown): v is Raw => v !== null && typeof v === 'object' && !Array.isArray(v);
const positiveInt = (v: unknown): number | undefined => (Number.isInteger(v) && (v as number) >= 1 ? (v as number) : undefined);

/**
 * The model folder to count from: the folder itself, or for a hub id the cached snapshot with its
 * safetensors headers (hub_models.ts; a LoraxsError saying so while they are being fetched).
 */
function modelSource(model: string, hub: { id: string; revision: string | null } | null | undefined): Pick<ParamsInput, 'model' | 'headers'> | LoraxsError {
  if (!hub) return { model };
  const state = hubModelState(hub.id, hub.revision);
  if (state.kind === 'ready') return { model: state.dir, headers: state.headers };
  return state.kind === 'error' ? state.error : new HubModelPending(state.message);
}

/** The ParamsInput of a config text, or a LoraxsError when not even `model:` can be read. */
export function configForParams(text: string, file: string): ConfigForParams | LoraxsError {
  const { config } = parseConfigText(text, file);
  if (config) {
    const source = modelSource(config.model, config.hubModel);
    if (source instanceof LoraxsError) return source;
    return {
      input: { ...source, adapter: config.adapter, file: config.file, text, task: config.task, training: config.training, data: config.data },
      alpha: config.adapter.alpha,
      config,
    };
  }
  let raw: unknown;
  try {
    raw = parseWithPositions(text).doc.toJS();
  } catch {
    raw = null;
  }
  if (!isObject(raw) || typeof raw.model !== 'string' || raw.model.trim() === '') {
    return new LoraxsError('the config names no model folder (model:), so parameters cannot be counted', { file });
  }
  const a = isObject(raw.adapter) ? raw.adapter : {};
  const t = isObject(raw.training) ? raw.training : {};
  const rank = positiveInt(a.rank) ?? ADAPTER_DEFAULTS.rank;
  const targets = Array.isArray(a.targets) ? a.targets.filter((x): x is string => typeof x === 'string' && x !== '') : [];
  const rankPattern: Record<string, number> = {};
  if (isObject(a.rank_pattern)) {
    for (const [k, v] of Object.entries(a.rank_pattern)) if (positiveInt(v)) rankPattern[k] = v as number;
  }
  const task = ['classification', 'regression', 'causal-lm'].includes(raw.task as string) ? (raw.task as Task) : undefined;
  const absFile = path.resolve(file);
  const ref = parseModelRef(raw.model, path.dirname(absFile));
  const source = modelSource(ref.kind === 'hub' ? ref.id : ref.path,
    ref.kind === 'hub' ? { id: ref.id, revision: typeof raw.revision === 'string' ? raw.revision : null } : null);
  if (source instanceof LoraxsError) return source;
  return {
    input: {
      ...source,
      adapter: { rank, targets, rankPattern },
      file: absFile,
      text,
      task,
      training: {
        batchSize: positiveInt(t.batch_size) ?? TRAINING_DEFAULTS.batchSize,
        maxLength: positiveInt(t.max_length) ?? TRAINING_DEFAULTS.maxLength,
        optimizer: t.optimizer === 'sgd' ? 'sgd' : 'adamw',
      },
    },
    alpha: typeof a.alpha === 'number' && a.alpha > 0 ? a.alpha : rank,
    config: null,
  };
}

/**
 * For hover: when the config names a hub model whose headers are being fetched (or are not cached yet and
 * may be fetched), waits for them at most `timeoutMs`, so the hover can show the counts.
 */
export async function settleModelOf(text: string, file: string, timeoutMs: number): Promise<void> {
  let raw: unknown;
  try {
    raw = parseWithPositions(text).doc.toJS();
  } catch {
    return;
  }
  if (!isObject(raw) || typeof raw.model !== 'string' || raw.model.trim() === '') return;
  const ref = parseModelRef(raw.model, path.dirname(path.resolve(file)));
  if (ref.kind !== 'hub') return;
  const revision = typeof raw.revision === 'string' ? raw.revision : null;
  if (hubModelState(ref.id, revision).kind === 'pending') await settleHubModel(ref.id, revision, timeoutMs);
}

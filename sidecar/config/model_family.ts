/**
 * The family of a model folder (`model_type` of its config.json), read cheaply and without failing: the
 * config parser uses it only to choose defaults (targets, task); a missing or unreadable model is reported
 * by the engine and the language server, which read config.json fully.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DECODER_MODEL_TYPES, ENCODER_MODEL_TYPES } from './defaults';

export interface ModelFamily {
  modelType: string;
  kind: 'encoder' | 'decoder';
  /** `max_position_embeddings` of config.json, when it is a positive integer. */
  maxPositionEmbeddings?: number;
  /** `pad_token_id` of config.json, when it is a non-negative integer. */
  padTokenId?: number;
}

/**
 * The longest input the model's position table allows: RoBERTa's positions start after its padding index
 * (as models/bert.ts computes), so it has max_position_embeddings - pad_token_id - 1; the others have
 * max_position_embeddings. Undefined when config.json does not say.
 */
export function positionsOf(f: ModelFamily): number | undefined {
  if (f.maxPositionEmbeddings === undefined) return undefined;
  if (f.modelType === 'roberta') return f.maxPositionEmbeddings - (f.padTokenId ?? 1) - 1;
  return f.maxPositionEmbeddings;
}

/** `{ modelType, kind }` of `<dir>/config.json`, or null when it is absent, unreadable or of another family. */
export function modelFamilyOf(dir: string): ModelFamily | null {
  try {
    const raw = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as { model_type?: unknown; max_position_embeddings?: unknown; pad_token_id?: unknown };
    if (raw === null || typeof raw !== 'object') return null;
    const modelType = typeof raw.model_type === 'string' ? raw.model_type : '';
    const kind = DECODER_MODEL_TYPES.includes(modelType) ? 'decoder' : ENCODER_MODEL_TYPES.includes(modelType) ? 'encoder' : null;
    if (!kind) return null;
    const family: ModelFamily = { modelType, kind };
    const mpe = raw.max_position_embeddings;
    if (typeof mpe === 'number' && Number.isInteger(mpe) && mpe > 0) family.maxPositionEmbeddings = mpe;
    const pad = raw.pad_token_id;
    if (typeof pad === 'number' && Number.isInteger(pad) && pad >= 0) family.padTokenId = pad;
    return family;
  } catch {
    return null;
  }
}

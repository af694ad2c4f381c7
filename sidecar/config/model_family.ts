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
}

/** `{ modelType, kind }` of `<dir>/config.json`, or null when it is absent, unreadable or of another family. */
export function modelFamilyOf(dir: string): ModelFamily | null {
  try {
    const raw = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as { model_type?: unknown };
    const modelType = typeof raw.model_type === 'string' ? raw.model_type : '';
    if (DECODER_MODEL_TYPES.includes(modelType)) return { modelType, kind: 'decoder' };
    if (ENCODER_MODEL_TYPES.includes(modelType)) return { modelType, kind: 'encoder' };
    return null;
  } catch {
    return null;
  }
}

/**
 * Whether the engine can hold a model folder's architecture (io/model_config.ts's SUPPORTED_MODEL_TYPES, the
 * families models/registry.ts builds), read from config.json's `model_type` alone. A model it cannot hold
 * (GPT-2, Falcon, ...) is still trained by `loraxs launch` (the PyTorch trainer computes the factors), and
 * its adapters are merged and exported by the trainer's Python (engine/trainer_tools.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkpointFingerprint, type Checkpoint } from '../io/model_folder';
import { SUPPORTED_MODEL_TYPES } from '../io/model_config';

/** config.json's model_type, or null when the folder has none readable (the engine's own loader reports it). */
export function rawModelType(modelDir: string): string | null {
  try {
    const raw = JSON.parse(fs.readFileSync(path.join(modelDir, 'config.json'), 'utf8')) as { model_type?: unknown };
    return typeof raw.model_type === 'string' ? raw.model_type : null;
  } catch {
    return null;
  }
}

/** True when config.json names a model_type the engine does not build (an unreadable folder: false). */
export function engineCannotHold(modelDir: string): boolean {
  const t = rawModelType(modelDir);
  return t !== null && !(SUPPORTED_MODEL_TYPES as readonly string[]).includes(t);
}

/** The engine's fingerprint of a model folder (config.json and the safetensors headers), for any architecture. */
export function folderFingerprint(modelDir: string): string {
  const files = fs.readdirSync(modelDir).filter((f) => f.endsWith('.safetensors')).sort().map((f) => path.join(modelDir, f));
  return checkpointFingerprint({ dir: modelDir, files } as unknown as Checkpoint);
}

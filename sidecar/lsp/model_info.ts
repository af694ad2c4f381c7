/**
 * What the language server knows of a model folder without loading weights: config.json, the safetensors
 * headers (when present) and the linear modules LoRA-XS can adapt. Cached per folder and refreshed when
 * config.json or the weight files change, so diagnostics, hover and completion can ask on every keystroke.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LoraxsError } from '../errors';
import type { LinearModule, ModelConfig } from '../models/types';
import { openCheckpoint } from '../io/model_folder';
import { readModelConfig } from '../io/model_config';
import { linearModulesOf } from '../models/linear_modules';
import type { SafetensorsHeader } from '../io/safetensors';
import { hubModelState } from './hub_models';

export interface ModelInfo {
  dir: string;
  config: ModelConfig;
  /** The linear layers, in forward order, with transformers' names. */
  modules: LinearModule[];
  /** Why the folder has no usable checkpoint (no safetensors, only pytorch_model.bin, ...); null when it has one. */
  checkpointError: LoraxsError | null;
}

interface CacheEntry {
  signature: string;
  info: ModelInfo | LoraxsError;
}

const cache = new Map<string, CacheEntry>();

/** Files whose change invalidates the cache entry, with their mtimes and sizes. */
function signatureOf(dir: string): string {
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((n) => n === 'config.json' || n.endsWith('.safetensors') || n.endsWith('.index.json') || n.endsWith('.bin'));
  } catch {
    return 'missing';
  }
  return names.sort().map((n) => {
    try {
      const st = fs.statSync(path.join(dir, n));
      return `${n}:${st.mtimeMs}:${st.size}`;
    } catch {
      return `${n}:gone`;
    }
  }).join('|');
}

function read(dir: string, headers?: ReadonlyMap<string, SafetensorsHeader>): ModelInfo | LoraxsError {
  if (!fs.existsSync(dir)) return new LoraxsError(`model folder ${dir} does not exist`, { file: dir });
  if (!fs.statSync(dir).isDirectory()) return new LoraxsError(`model ${dir} is a file, not a folder`, { file: dir });
  try {
    let config: ModelConfig;
    let checkpointError: LoraxsError | null = null;
    let bertPooler = true;
    try {
      const ckpt = openCheckpoint(dir, headers);
      config = ckpt.config;
      bertPooler = ckpt.tensors.has('bert.pooler.dense.weight');
    } catch (e) {
      if (!(e instanceof LoraxsError)) throw e;
      config = readModelConfig(dir); // throws when config.json itself is the problem
      checkpointError = e;
    }
    return { dir, config, modules: linearModulesOf(config, { bertPooler }), checkpointError };
  } catch (e) {
    if (e instanceof LoraxsError) return e;
    throw e;
  }
}

/**
 * The model folder's info, or the LoraxsError that says why it cannot be read (folder missing, no or
 * invalid config.json, unsupported model type). Never loads weights.
 */
export function modelInfo(dir: string, headers?: ReadonlyMap<string, SafetensorsHeader>): ModelInfo | LoraxsError {
  const abs = path.resolve(dir);
  const signature = `${signatureOf(abs)}|${[...headers?.keys() ?? []].join(',')}`;
  const hit = cache.get(abs);
  if (hit && hit.signature === signature) return hit.info;
  const info = read(abs, headers);
  cache.set(abs, { signature, info });
  return info;
}

/**
 * The info of a config's model: its folder, or for a hub id (`hubModel`) the cached snapshot with its
 * safetensors headers (hub_models.ts); null while a hub model's headers are being fetched.
 */
export function configModelInfo(config: { model: string; hubModel?: { id: string; revision: string | null } | null }): ModelInfo | LoraxsError | null {
  if (!config.hubModel) return modelInfo(config.model);
  const state = hubModelState(config.hubModel.id, config.hubModel.revision);
  if (state.kind === 'pending') return null;
  if (state.kind === 'error') return state.error;
  return modelInfo(state.dir, state.headers);
}

/**
 * Which files of a hub repository the engine needs: config.json; `model.safetensors`, or
 * `model.safetensors.index.json` and the shards its weight_map names; the tokenizer, generation and
 * chat-template files when the repository has them (`tokenizer.model` only when there is no
 * tokenizer.json). PyTorch `.bin` files are never fetched: a repository with only those is an error.
 */
import * as fs from 'node:fs';
import { LoraxsError } from '../errors';
import { checkRelativeFilename } from './cache_layout';

export const CONFIG_FILE = 'config.json';
export const SINGLE_WEIGHTS = 'model.safetensors';
export const WEIGHTS_INDEX = 'model.safetensors.index.json';
/** Looked for (HEAD) only when there are no safetensors, to say why the repository cannot be used. */
export const PYTORCH_WEIGHTS = ['pytorch_model.bin', 'pytorch_model.bin.index.json'];
/** Optional: fetched when present, in this order. */
export const TOKENIZER_FILES = [
  'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json',
  'chat_template.jinja', 'chat_template.json',
];
/** Fetched only when tokenizer.json is absent. */
export const SENTENCEPIECE_MODEL = 'tokenizer.model';

/** The shard files an index's weight_map names, in first-use order, each a safe relative path. */
export function shardsOfIndex(indexPath: string, label: string): string[] {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(indexPath, 'utf8'));
  } catch (e) {
    throw new LoraxsError(`${WEIGHTS_INDEX} of ${label} is not valid JSON: ${(e as Error).message}`, { file: indexPath });
  }
  const map = (json as { weight_map?: unknown })?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new LoraxsError(`${WEIGHTS_INDEX} of ${label} has no weight_map object`, { file: indexPath });
  }
  const shards: string[] = [];
  for (const f of Object.values(map as Record<string, unknown>)) {
    if (typeof f !== 'string') throw new LoraxsError(`${WEIGHTS_INDEX} of ${label}: weight_map values must be file names`, { file: indexPath });
    if (!shards.includes(f)) {
      checkRelativeFilename(f);
      shards.push(f);
    }
  }
  return shards;
}

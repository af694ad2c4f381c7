/**
 * The one base model a server holds: checkpoint, weights, backbone and tokenizer, loaded once; adapters add
 * only their R (and head) on top of these weights.
 */
import * as path from 'node:path';
import { initBackend } from '../backend/choice';
import { openCheckpoint, loadWeights, assertFitsBackend, checkpointFingerprint, type Checkpoint } from '../io/model_folder';
import { loadTokenizer, type TextTokenizer } from '../io/tokenizer';
import { createBackbone, type TransformerBackbone } from '../models/registry';
import type { Weights } from '../models/types';
import { createRaggedDecoder, type RaggedDecoder } from './ragged_decoder';
import type { EngineEvents } from '../records';

export interface BaseModel {
  dir: string;
  /** The names requests may use for the base model: the folder's name (listed first) or the hub id, and the --model argument. */
  names: string[];
  ckpt: Checkpoint;
  fingerprint: string;
  weights: Weights;
  backbone: TransformerBackbone;
  tokenizer: TextTokenizer;
  /** Decoders: continuous-batching decoding; null for encoders. */
  decoder: RaggedDecoder | null;
  backendName: string;
  dispose(): void;
}

export async function loadBaseModel(dir: string, given: string, events?: EngineEvents): Promise<BaseModel> {
  const backend = await initBackend();
  if (backend.warning) events?.log?.(`warning: ${backend.warning}`);
  const ckpt = openCheckpoint(dir);
  assertFitsBackend(ckpt, backend.memoryLimitBytes, backend.name);
  events?.log?.(`loading ${dir} (${ckpt.config.modelType}, ${ckpt.config.numLayers} layers) on ${backend.name}`);
  const weights = loadWeights(ckpt);
  const backbone = createBackbone(ckpt.config, weights, { dropout: null, source: dir });
  const tokenizer = loadTokenizer(dir, ckpt.config);
  const decoder = ckpt.config.kind === 'decoder' ? createRaggedDecoder(ckpt.config, weights) : null;
  return {
    dir,
    names: [...new Set(path.resolve(given) === path.resolve(dir) ? [path.basename(path.resolve(dir)), given] : [given, path.basename(path.resolve(dir))])],
    ckpt,
    fingerprint: checkpointFingerprint(ckpt),
    weights,
    backbone,
    tokenizer,
    decoder,
    backendName: backend.name,
    dispose() {
      for (const t of weights.values()) t.dispose();
    },
  };
}

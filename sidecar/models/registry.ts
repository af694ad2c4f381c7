/** Builds the backbone of a supported family from its normalised config and canonical weights. */
import { LoraxsError } from '../errors';
import { createEncoder } from './bert';
import type { BackboneOptions, TransformerBackbone } from './backbone_options';
import { createDecoder } from './llama';
import { createUseLite } from './use_lite';
import type { ModelConfig, Weights } from './types';

export type { BackboneOptions, DropoutRates, TransformerBackbone } from './backbone_options';

/**
 * The backbone for config.modelType. Tensors are looked up and their shapes checked against the config
 * now, so a mismatched checkpoint fails here with the tensor's name rather than inside a forward pass.
 * `opts.dropout` overrides every dropout rate (training.dropout); null or absent keeps the config's.
 */
export function createBackbone(config: ModelConfig, weights: Weights, opts: BackboneOptions = {}): TransformerBackbone {
  switch (config.modelType) {
    case 'bert':
    case 'roberta':
      return createEncoder(config, weights, opts);
    case 'llama':
    case 'mistral':
    case 'qwen2':
    case 'gemma':
      return createDecoder(config, weights, opts);
    case 'use_lite':
      return createUseLite(config, weights, opts);
    default:
      throw new LoraxsError(`model_type "${String((config as ModelConfig).modelType)}" is not supported`,
        { file: 'config.json', detail: 'model_type' });
  }
}

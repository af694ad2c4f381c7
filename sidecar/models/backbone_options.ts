/** Options every backbone takes, and the dropout rates it settles on. */
import type { Backbone, ModelConfig } from './types';

export interface BackboneOptions {
  /**
   * `training.dropout`: null or absent keeps the model's own rates (config.json); a number replaces every
   * dropout rate of the model and its head (hidden, attention probabilities, classifier).
   */
  dropout?: number | null;
  /** The checkpoint path, named in errors about missing or misshapen tensors. */
  source?: string;
}

/** The dropout rates a forward pass uses in training mode (evaluation ignores them). */
export interface DropoutRates {
  /** After embeddings and after each sub-layer's output projection (encoders; decoders have none). */
  hidden: number;
  /** On the attention probabilities. */
  attention: number;
  /** Before the classification head's projections (BERT, RoBERTa). */
  classifier: number;
}

/** A backbone built by createBackbone: it also says which dropout rates it (and its head) use. */
export interface TransformerBackbone extends Backbone {
  readonly dropoutRates: DropoutRates;
}

/** The model's own rates, or `override` everywhere when it is a number. */
export function resolveDropout(config: ModelConfig, override: number | null | undefined): DropoutRates {
  if (override !== null && override !== undefined) {
    return { hidden: override, attention: override, classifier: override };
  }
  if (config.kind === 'decoder') return { hidden: 0, attention: config.attentionDropout, classifier: 0 };
  return {
    hidden: config.hiddenDropout,
    attention: config.attentionDropout,
    classifier: config.classifierDropout ?? config.hiddenDropout,
  };
}

/** The rates of a backbone from createBackbone, or the config's own for any other Backbone. */
export function dropoutRatesOf(backbone: Backbone): DropoutRates {
  const rates = (backbone as Partial<TransformerBackbone>).dropoutRates;
  return rates ?? resolveDropout(backbone.config, null);
}

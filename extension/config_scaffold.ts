/**
 * "New LoRA-XS Config…": the text of a starting config for a model folder, chosen from its config.json
 * (no weights are read). Encoders get a classification task with query/value targets, decoders a
 * causal-lm task with q_proj/v_proj; the rank is 16, or the model's width when that is smaller;
 * max_length is 128 (encoders) or 256 (decoders), or the model's positions when fewer.
 * Pure (no vscode import), so node:test checks the text against the engine's config parser.
 */

/** What the scaffold reads from config.json. */
export interface ModelConfigJson {
  model_type?: unknown;
  hidden_size?: unknown;
  d_model?: unknown;
  num_labels?: unknown;
  max_position_embeddings?: unknown;
  id2label?: unknown;
  architectures?: unknown;
}

const ENCODERS = new Set(['bert', 'roberta', 'xlm-roberta', 'camembert', 'distilbert', 'electra', 'deberta', 'deberta-v2']);

/** PEFT-style target keys of the attention query and value projections, by model_type. */
export function defaultTargets(modelType: string): string[] {
  if (modelType === 'distilbert') return ['q_lin', 'v_lin'];
  if (ENCODERS.has(modelType)) return ['query', 'value'];
  return ['q_proj', 'v_proj'];
}

export interface ScaffoldOptions {
  /** The model folder as written in the config: relative to the config file, with forward slashes. */
  modelPath: string;
  /** Output folder, relative to the config. */
  output: string;
}

function yamlString(s: string): string {
  return /^[\w./-]+$/.test(s) && !/^[-.]/.test(s) ? s : JSON.stringify(s);
}

/** The config text for a model whose config.json is `model`. */
export function scaffoldConfig(model: ModelConfigJson, opts: ScaffoldOptions): string {
  const modelType = typeof model.model_type === 'string' ? model.model_type : '';
  const encoder = ENCODERS.has(modelType);
  const width = typeof model.hidden_size === 'number' ? model.hidden_size : typeof model.d_model === 'number' ? model.d_model : undefined;
  const rank = width !== undefined ? Math.max(1, Math.min(16, width)) : 16;
  const targets = defaultTargets(modelType);
  // RoBERTa-style models reserve 2 positions (padding_idx + 1 offset).
  const positions = typeof model.max_position_embeddings === 'number'
    ? model.max_position_embeddings - (['roberta', 'xlm-roberta', 'camembert'].includes(modelType) ? 2 : 0) : undefined;
  const maxLength = Math.min(encoder ? 128 : 256, positions ?? Number.POSITIVE_INFINITY);
  const labels = model.id2label && typeof model.id2label === 'object' ? Object.keys(model.id2label).length : undefined;
  const lines = [
    `# LoRA-XS fine-tuning of ${yamlString(opts.modelPath)} (${modelType || 'unknown model type'}).`,
    '# Hover a key for its meaning and cost; the language server checks this file as you type.',
    `model: ${yamlString(opts.modelPath)}`,
    `task: ${encoder ? 'classification' : 'causal-lm'}`,
    'data:',
    '  train: data/train.tsv        # .jsonl | .csv | .tsv with a header row',
    '  validation: data/dev.tsv',
  ];
  if (encoder) {
    lines.push('  text: sentence', `  label: label${labels ? `               # the model's config.json has ${labels} labels` : ''}`);
  } else {
    lines.push('  text: text');
  }
  lines.push(
    'adapter:',
    `  rank: ${rank}`,
    `  alpha: ${rank}`,
    `  targets: [${targets.join(', ')}]`,
    'training:',
    '  epochs: 3',
    `  batch_size: ${encoder ? 16 : 8}`,
    '  lr: 1.0e-3',
    `  max_length: ${maxLength}`,
    `output: ${yamlString(opts.output)}`,
    '',
  );
  return lines.join('\n');
}

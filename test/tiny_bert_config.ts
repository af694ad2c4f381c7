/**
 * The classification config the tests write beside test/workspace.ts's tiny-BERT workspace (model/ is the
 * tiny BERT fixture with a tokenizer; train.tsv and dev.tsv have `sentence` and `label` columns), at rank 4
 * on (query, value). The CLI tests and the VS Code tests (test/vscode/workspace_configs.ts) share it.
 */
export interface TinyBertConfigOptions {
  /** the model folder or hub id (default `model`) */
  model?: string;
  epochs?: number;
  batchSize?: number;
  /** more `training:` lines, each indented by two spaces and ending in a newline */
  trainingLines?: string;
  output?: string;
}

export function tinyBertConfig(options: TinyBertConfigOptions | string = {}): string {
  const o = typeof options === 'string' ? { model: options } : options;
  return `model: ${o.model ?? 'model'}
task: classification
data:
  train: train.tsv
  validation: dev.tsv
  text: sentence
  label: label
adapter:
  rank: 4
  targets: [query, value]
training:
  epochs: ${o.epochs ?? 1}
  batch_size: ${o.batchSize ?? 16}
${o.trainingLines ?? ''}output: ${o.output ?? 'out'}
`;
}

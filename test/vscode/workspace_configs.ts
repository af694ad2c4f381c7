/**
 * The configs the VS Code tests write into their workspace (test/workspace.ts makeWorkspace('bert',
 * 'seq-cls'): model/ is the tiny BERT fixture with a tokenizer, train.tsv has 48 rows, dev.tsv 16).
 * 2 layers × (query, value) at rank 4: 4 modules × 4² = 64 LoRA-XS parameters.
 */
import { tinyBertConfig } from '../tiny_bert_config';

export const GOOD_CONFIG = tinyBertConfig({ epochs: 2, batchSize: 8, trainingLines: '  max_length: 16\n  lr: 0.01\n', output: 'runs/good' });

/** GOOD_CONFIG with an unknown key under training (line 16; BAD_KEY_LINE is 0-based). */
export const BAD_CONFIG = GOOD_CONFIG.replace('  lr: 0.01\n', '  lr: 0.01\n  learning_rate: 0.1\n').replace('runs/good', 'runs/bad');
export const BAD_KEY = 'learning_rate';
export const BAD_KEY_LINE = 15;
export const LORAXS_PARAMS = 64;

/**
 * "Did you mean ...?": the closest valid name for a misspelt key, enum value or module name. Tries, in
 * order: known aliases (names other tools use, e.g. `learning_rate` for `lr`), the same name in another
 * case style (`batchSize`), initials (`lr` for `learning_rate` and back), then edit distance within a
 * third of the name's length.
 */

/** Names other tools (transformers, PEFT, nanoGPT) use for our keys. */
const ALIASES: Record<string, string> = {
  learning_rate: 'lr',
  learningrate: 'lr',
  head_learning_rate: 'head_lr',
  classifier_lr: 'head_lr',
  lr_head: 'head_lr',
  num_epochs: 'epochs',
  num_train_epochs: 'epochs',
  epoch: 'epochs',
  bs: 'batch_size',
  per_device_train_batch_size: 'batch_size',
  train_batch_size: 'batch_size',
  gradient_accumulation_steps: 'grad_accum_steps',
  grad_accum: 'grad_accum_steps',
  accumulation_steps: 'grad_accum_steps',
  warmup: 'warmup_ratio',
  warmup_steps: 'warmup_ratio',
  lr_scheduler_type: 'schedule',
  scheduler: 'schedule',
  lr_schedule: 'schedule',
  max_norm: 'max_grad_norm',
  grad_clip: 'max_grad_norm',
  clip_grad_norm: 'max_grad_norm',
  max_seq_length: 'max_length',
  max_seq_len: 'max_length',
  seq_len: 'max_length',
  block_size: 'max_length',
  r: 'rank',
  lora_r: 'rank',
  lora_alpha: 'alpha',
  target_modules: 'targets',
  modules: 'targets',
  lora_dropout: 'dropout',
  eval_steps: 'eval_every',
  evaluation_strategy: 'eval_every',
  valid: 'validation',
  val: 'validation',
  dev: 'validation',
  eval: 'validation',
  test: 'validation',
  labels: 'label',
  target: 'label',
  input: 'text',
  sentence: 'text',
  instruction: 'prompt',
  output_dir: 'output',
  out: 'output',
  model_name_or_path: 'model',
  model_path: 'model',
  base_model: 'model',
  dataset: 'data',
  lora: 'adapter',
  optim: 'optimizer',
  init_lora_weights: 'init',
  initialization: 'init',
  random_seed: 'seed',
};

/**
 * Edit distance with adjacent transpositions (optimal string alignment): insert, delete, substitute and
 * swap two neighbouring characters each cost 1, so `lable` is 1 from `label`.
 */
export function editDistance(a: string, b: string): number {
  const d: number[][] = [];
  for (let i = 0; i <= a.length; i++) d.push([i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 0; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** `batchSize`, `Batch-Size`, `batch size` -> `batch_size`. */
function normalise(name: string): string {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/[\s-]+/g, '_')
    .toLowerCase();
}

function initials(name: string): string {
  return name
    .split('_')
    .filter(Boolean)
    .map((w) => w[0])
    .join('');
}

/** The closest of `candidates` to `name`, or null when none is close enough to be a likely typo. */
export function closestName(name: string, candidates: readonly string[]): string | null {
  if (candidates.length === 0) return null;
  const norm = normalise(name);
  const alias = ALIASES[norm];
  if (alias && candidates.includes(alias)) return alias;
  const sameNorm = candidates.find((c) => normalise(c) === norm);
  if (sameNorm) return sameNorm;
  const byInitials = candidates.find(
    (c) => (norm.includes('_') && initials(norm) === c) || (c.includes('_') && initials(c) === norm),
  );
  if (byInitials) return byInitials;
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(norm, normalise(c));
    if (d < bestDistance) {
      bestDistance = d;
      best = c;
    }
  }
  const limit = Math.max(1, Math.floor(Math.max(norm.length, 3) / 3));
  return bestDistance <= limit ? best : null;
}

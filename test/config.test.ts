/**
 * Config parsing: defaults, paths, and problems located at the exact key or value (LSP ranges).
 * Expected ranges are computed from the test text itself (line index and indexOf), independently of the
 * `yaml` package's positions.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv from 'ajv';
import { parseConfigText, loadConfig, keyRange, valueRange } from '../sidecar/config/parse';
import type { ConfigProblem, Range } from '../sidecar/config/parse';
import { LORAXS_SCHEMA, schemaAt } from '../sidecar/config/schema';
import type { SchemaNode } from '../sidecar/config/schema';
import { ADAPTER_DEFAULTS, ANALYSIS_DEFAULTS, SVD_DEFAULTS, TRAINING_DEFAULTS } from '../sidecar/config/defaults';
import { LoraxsError } from '../sidecar/errors';
import { tempDir } from './paths';

/** The example of issue 2, item 12. */
const ISSUE_EXAMPLE = `model: ../models/roberta-large   # Hugging Face folder
task: classification
data:
  train: data/train.tsv
  validation: data/dev.tsv
  columns: [source, label, mark, sentence]
  text: sentence
  label: label
adapter:
  rank: 16
  rank_pattern: {}
  alpha: 16
  targets: [query, value, attention.output.dense, output.dense]
  init: svd
  init_std: 1.0e-5
training:
  epochs: 20
  batch_size: 32
  grad_accum_steps: 1
  optimizer: adamw
  lr: 1.0e-3
  head_lr: 1.0e-3
  weight_decay: 0.0
  warmup_ratio: 0.06
  schedule: linear
  max_grad_norm: 1.0
  max_length: 128
  dropout: null
  shuffle: true
  seed: 0
  eval_every: epoch
output: runs/sst2-r16
`;

/** Range of the `occurrence`-th `needle` on line `line` (0-based), found by plain string search. */
function rangeOf(text: string, line: number, needle: string, occurrence = 0): Range {
  const lineText = text.split('\n')[line];
  let at = -1;
  for (let k = 0; k <= occurrence; k++) at = lineText.indexOf(needle, at + 1);
  assert.ok(at >= 0, `'${needle}' not on line ${line}: ${lineText}`);
  return { start: { line, character: at }, end: { line, character: at + needle.length } };
}

function only(problems: ConfigProblem[], severity: 'error' | 'warning' = 'error'): ConfigProblem {
  const matching = problems.filter((p) => p.severity === severity);
  assert.equal(matching.length, 1, `expected one ${severity}, got: ${JSON.stringify(problems, null, 1)}`);
  return matching[0];
}

test('the issue example parses with every value kept and paths resolved against the file', () => {
  const file = '/projects/glue/sst2.loraxs.yaml';
  const { config, problems } = parseConfigText(ISSUE_EXAMPLE, file, { requireTraining: true });
  assert.deepEqual(problems, []);
  assert.ok(config);
  assert.deepEqual(config, {
    file,
    model: '/projects/models/roberta-large',
    task: 'classification',
    data: {
      train: '/projects/glue/data/train.tsv',
      validation: '/projects/glue/data/dev.tsv',
      columns: ['source', 'label', 'mark', 'sentence'],
      text: 'sentence',
      prompt: null,
      response: null,
      label: 'label',
    },
    adapter: {
      rank: 16,
      rankPattern: {},
      alpha: 16,
      targets: ['query', 'value', 'attention.output.dense', 'output.dense'],
      init: 'svd',
      initStd: 1e-5,
      svd: { method: 'randomized', oversamples: 10, powerIters: 7 },
      factorSeed: 0,
    },
    training: {
      epochs: 20, batchSize: 32, gradAccumSteps: 1, optimizer: 'adamw', lr: 1e-3, headLr: 1e-3,
      weightDecay: 0, warmupRatio: 0.06, schedule: 'linear', maxGradNorm: 1, maxLength: 128, dropout: null,
      shuffle: true, seed: 0, evalEvery: 'epoch',
    },
    output: '/projects/glue/runs/sst2-r16',
    analysis: { fractions: [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1], regions: ['top', 'middle', 'bottom'], evalLimit: 256, seeds: 3 },
  });
});

test('a minimal config gets the documented defaults (alpha = rank, head_lr = lr, output = runs/<stem>)', () => {
  const text = 'model: m\nadapter:\n  rank: 8\ntraining:\n  lr: 0.02\n';
  const { config, problems } = parseConfigText(text, '/a/b/cola-small.loraxs.yaml');
  assert.deepEqual(problems, []);
  assert.ok(config);
  assert.equal(config.adapter.rank, 8);
  assert.equal(config.adapter.alpha, 8);
  assert.equal(config.training.lr, 0.02);
  assert.equal(config.training.headLr, 0.02);
  assert.equal(config.training.epochs, TRAINING_DEFAULTS.epochs);
  assert.equal(config.output, '/a/b/runs/cola-small');
  assert.equal(config.model, '/a/b/m');
  assert.equal(config.data, null);
  // No readable model: targets are left to the engine, task defaults to classification.
  assert.deepEqual(config.adapter.targets, []);
  assert.equal(config.task, 'classification');
});

test('targets and task default by the model family read from config.json', () => {
  const dir = tempDir();
  fs.mkdirSync(path.join(dir, 'enc'));
  fs.writeFileSync(path.join(dir, 'enc', 'config.json'), JSON.stringify({ model_type: 'roberta' }));
  fs.mkdirSync(path.join(dir, 'dec'));
  fs.writeFileSync(path.join(dir, 'dec', 'config.json'), JSON.stringify({ model_type: 'qwen2' }));
  const file = path.join(dir, 'x.loraxs.yaml');
  const enc = parseConfigText('model: enc\nadapter: {}\n', file).config;
  assert.deepEqual(enc?.adapter.targets, ['query', 'value']);
  assert.equal(enc?.task, 'classification');
  const dec = parseConfigText('model: dec\nadapter: {}\n', file).config;
  assert.deepEqual(dec?.adapter.targets, ['q_proj', 'v_proj']);
  assert.equal(dec?.task, 'causal-lm');
  assert.equal(dec?.adapter.rank, ADAPTER_DEFAULTS.rank);
});

test('an unknown key is reported at the key with the closest valid key', () => {
  const text = 'model: m\nadapter:\n  rank: 4\ntraining:\n  learning_rate: 0.001\n  epochs: 3\n';
  const { config, problems } = parseConfigText(text, '/x/a.loraxs.yaml');
  assert.equal(config, null);
  const p = only(problems);
  assert.equal(p.message, "unknown key 'learning_rate' in training (did you mean 'lr'?)");
  assert.deepEqual(p.range, rangeOf(text, 4, 'learning_rate'));
  assert.deepEqual(p.path, ['training', 'learning_rate']);
});

test('unknown keys: typos, another case style, and keys in the wrong section', () => {
  const text = 'model: m\nrank: 4\nadapter:\n  ranks: 4\n  initStd: 0.1\ntraining: {batchSize: 2}\n';
  const { problems } = parseConfigText(text, '/x/a.loraxs.yaml');
  const byKey = new Map(problems.map((p) => [String(p.path[p.path.length - 1]), p]));
  assert.equal(problems.length, 4, JSON.stringify(problems));
  assert.equal(byKey.get('rank')?.message, "unknown key 'rank' at the top level ('rank' belongs in adapter: did you mean 'adapter.rank'?)");
  assert.deepEqual(byKey.get('rank')?.range, rangeOf(text, 1, 'rank'));
  assert.equal(byKey.get('ranks')?.message, "unknown key 'ranks' in adapter (did you mean 'rank'?)");
  assert.equal(byKey.get('initStd')?.message, "unknown key 'initStd' in adapter (did you mean 'init_std'?)");
  assert.deepEqual(byKey.get('initStd')?.range, rangeOf(text, 4, 'initStd'));
  assert.equal(byKey.get('batchSize')?.message, "unknown key 'batchSize' in training (did you mean 'batch_size'?)");
  assert.deepEqual(byKey.get('batchSize')?.range, rangeOf(text, 5, 'batchSize'));
});

test('wrong types and out-of-range values are reported at the value', () => {
  const cases: Array<[string, string, string, (string | number)[]]> = [
    ['  lr: fast', "training.lr must be a number (got 'fast')", 'fast', ['training', 'lr']],
    ['  lr: -0.5', 'training.lr must be > 0 (got -0.5)', '-0.5', ['training', 'lr']],
    ['  batch_size: 2.5', 'training.batch_size must be an integer (got 2.5)', '2.5', ['training', 'batch_size']],
    ['  warmup_ratio: 1.5', 'training.warmup_ratio must be <= 1 (got 1.5)', '1.5', ['training', 'warmup_ratio']],
    ['  dropout: 1', 'training.dropout must be < 1 (got 1)', '1', ['training', 'dropout']],
    ['  max_length: 1', 'training.max_length must be >= 2 (got 1)', '1', ['training', 'max_length']],
    ["  eval_every: step", "training.eval_every must be 'epoch', 'end' or a number of steps (an integer >= 1) (got 'step')", 'step', ['training', 'eval_every']],
    ['  eval_every: 0', "training.eval_every must be 'epoch', 'end' or a number of steps (an integer >= 1) (got 0)", '0', ['training', 'eval_every']],
    ['  schedule: cosin', "training.schedule must be one of linear, cosine, constant (got 'cosin'; did you mean 'cosine'?)", 'cosin', ['training', 'schedule']],
    ['  shuffle: "yes"', "training.shuffle must be true or false (got 'yes')", '"yes"', ['training', 'shuffle']],
  ];
  for (const [line, message, valueText, keyPath] of cases) {
    const text = `model: m\nadapter: {rank: 4}\ntraining:\n${line}\n`;
    const p = only(parseConfigText(text, '/x/a.loraxs.yaml').problems);
    assert.equal(p.message, message);
    assert.deepEqual(p.range, rangeOf(text, 3, valueText, line.includes(': 1') || line.includes(': 0') ? 0 : 0), line);
    assert.deepEqual(p.path, keyPath);
  }
});

test('adapter values: rank, alpha, rank_pattern entries, targets items, text pairs', () => {
  const text = [
    'model: m',
    'adapter:',
    '  rank: 0',
    '  alpha: 0',
    '  rank_pattern: {output.dense: 0, query: 8}',
    '  targets: [query, 7]',
    'data: {train: t.tsv, text: [a, b, c], label: y}',
    '',
  ].join('\n');
  const { problems } = parseConfigText(text, '/x/a.loraxs.yaml');
  const byPath = new Map(problems.map((p) => [p.path.join('/'), p]));
  assert.equal(problems.length, 5, JSON.stringify(problems, null, 1));
  assert.equal(byPath.get('adapter/rank')?.message, 'adapter.rank must be >= 1 (got 0)');
  assert.deepEqual(byPath.get('adapter/rank')?.range, rangeOf(text, 2, '0'));
  assert.equal(byPath.get('adapter/alpha')?.message, 'adapter.alpha must be > 0 (got 0)');
  const rp = byPath.get('adapter/rank_pattern/output.dense');
  assert.equal(rp?.message, "adapter.rank_pattern['output.dense'] must be >= 1 (got 0)");
  assert.deepEqual(rp?.range, rangeOf(text, 4, '0'));
  const item = byPath.get('adapter/targets/1');
  assert.equal(item?.message, 'adapter.targets[1] must be a string (got 7)');
  assert.deepEqual(item?.range, rangeOf(text, 5, '7'));
  const pair = byPath.get('data/text');
  assert.equal(pair?.message, "data.text must be a field name, or a list of two field names for sentence pairs (got a list)");
  assert.deepEqual(pair?.range, rangeOf(text, 6, '[a, b, c]'));
});

test('missing required keys: model and adapter always; task and data when training', () => {
  const noModel = parseConfigText('adapter: {}\n', '/x/a.loraxs.yaml');
  assert.match(only(noModel.problems).message, /^missing key 'model' at the top level \(Hugging Face model folder/);
  assert.deepEqual(noModel.problems[0].range, { start: { line: 0, character: 0 }, end: { line: 0, character: 11 } });
  const forParams = parseConfigText('model: m\nadapter: {rank: 4}\n', '/x/a.loraxs.yaml');
  assert.deepEqual(forParams.problems, []);
  const forTrain = parseConfigText('model: m\nadapter: {rank: 4}\n', '/x/a.loraxs.yaml', { requireTraining: true });
  assert.equal(forTrain.config, null);
  assert.deepEqual(forTrain.problems.map((p) => p.path), [['task'], ['data']]);
  const noTrainFile = parseConfigText('model: m\nadapter: {}\ndata:\n  text: s\n', '/x/a.loraxs.yaml');
  const p = only(noTrainFile.problems);
  assert.match(p.message, /^missing key 'train' in data/);
  assert.deepEqual(p.range, rangeOf('model: m\nadapter: {}\ndata:\n  text: s\n', 2, 'data'));
});

test('task and data fields must fit together', () => {
  const file = '/x/a.loraxs.yaml';
  const lm = (data: string): ConfigProblem[] => parseConfigText(`model: m\ntask: causal-lm\nadapter: {}\ndata: ${data}\n`, file).problems;
  assert.deepEqual(lm('{train: t.jsonl, text: story}'), []);
  assert.deepEqual(lm('{train: t.jsonl, prompt: q, response: a}'), []);
  assert.match(only(lm('{train: t.jsonl, prompt: q}')).message, /^data\.prompt needs data\.response/);
  assert.match(only(lm('{train: t.jsonl, text: s, prompt: q, response: a}')).message, /either data\.text or data\.prompt/);
  assert.match(only(lm('{train: t.jsonl}')).message, /needs data\.text .* or data\.prompt \+ data\.response/);
  assert.match(only(lm('{train: t.jsonl, text: [a, b]}')).message, /one text field, not a pair/);
  const withLabel = lm('{train: t.jsonl, text: s, label: y}');
  assert.match(only(withLabel, 'warning').message, /label is ignored/);

  const cls = (data: string): ConfigProblem[] => parseConfigText(`model: m\ntask: regression\nadapter: {}\ndata: ${data}\n`, file).problems;
  assert.deepEqual(cls('{train: t.tsv, text: [s1, s2], label: score}'), []);
  assert.match(only(cls('{train: t.tsv, text: s}')).message, /^task regression needs data\.label/);
  assert.match(only(cls('{train: t.tsv, text: s, label: y, prompt: p}')).message, /prompt is for causal-lm only/);

  // Without task:, prompt/response imply causal-lm.
  const implied = parseConfigText('model: m\nadapter: {}\ndata: {train: t.jsonl, prompt: q, response: a}\n', file);
  assert.equal(implied.config?.task, 'causal-lm');
});

test('fields named with data.columns must be among the columns', () => {
  const text = 'model: m\ntask: classification\nadapter: {}\ndata:\n  train: t.tsv\n  columns: [source, label, mark, sentence]\n  text: sentense\n  label: label\n';
  const p = only(parseConfigText(text, '/x/a.loraxs.yaml').problems);
  assert.equal(p.message, "data.text 'sentense' is not one of data.columns (source, label, mark, sentence); did you mean 'sentence'?");
  assert.deepEqual(p.range, rangeOf(text, 6, 'sentense'));
});

test('a YAML syntax error is reported at its position and stops there', () => {
  const text = 'model: m\nadapter:\n  targets: [query, value\n  rank: 4\n';
  const { config, problems } = parseConfigText(text, '/x/a.loraxs.yaml');
  assert.equal(config, null);
  assert.ok(problems.length >= 1);
  assert.ok(problems.every((p) => p.message.startsWith('YAML syntax error: ')), JSON.stringify(problems));
  // The unterminated flow sequence is reported on its own line or where the parser noticed (next line).
  assert.ok([2, 3].includes(problems[0].range.start.line), JSON.stringify(problems[0]));

  const dup = 'model: m\nadapter: {}\nmodel: n\n';
  const d = only(parseConfigText(dup, '/x/a.loraxs.yaml').problems);
  assert.match(d.message, /YAML syntax error: .*unique/i);
  assert.deepEqual(d.range, rangeOf(dup, 2, 'model'));

  const tab = 'model: m\nadapter:\n\trank: 4\n';
  const t = parseConfigText(tab, '/x/a.loraxs.yaml').problems;
  assert.ok(t.length >= 1 && t[0].range.start.line === 2, JSON.stringify(t));
});

test('an empty file or a non-mapping is one clear error', () => {
  assert.match(only(parseConfigText('', '/x/a.loraxs.yaml').problems).message, /the config is empty/);
  assert.match(only(parseConfigText('# only a comment\n', '/x/a.loraxs.yaml').problems).message, /the config is empty/);
  assert.match(only(parseConfigText('- model\n', '/x/a.loraxs.yaml').problems).message, /must be a mapping/);
});

test('columns are UTF-16 units (LSP), also after non-ASCII text', () => {
  const text = 'model: "modèles/😀"\nadapter: {rank: 4, alfa: 2}\ndata: {train: "données/😀.tsv", lable: y, text: x}\n';
  const { problems } = parseConfigText(text, '/x/a.loraxs.yaml');
  const p = problems.find((q) => q.path[1] === 'lable');
  assert.ok(p, JSON.stringify(problems));
  assert.deepEqual(p.range, rangeOf(text, 2, 'lable'));
  assert.equal(p.message, "unknown key 'lable' in data (did you mean 'label'?)");
});

test('loadConfig reads the file, resolves paths, and throws file:line:col listing every error', () => {
  const dir = tempDir();
  fs.mkdirSync(path.join(dir, 'configs'));
  const good = path.join(dir, 'configs', 'sst2.loraxs.yaml');
  fs.writeFileSync(good, 'model: ../models/tiny\ntask: classification\nadapter: {rank: 2}\ndata:\n  train: ../data/train.jsonl\n  text: sentence\n  label: label\noutput: out/run1\n');
  const config = loadConfig(good, { requireTraining: true });
  assert.equal(config.model, path.join(dir, 'models', 'tiny'));
  assert.equal(config.data?.train, path.join(dir, 'data', 'train.jsonl'));
  assert.equal(config.output, path.join(dir, 'configs', 'out', 'run1'));

  const bad = path.join(dir, 'bad.loraxs.yaml');
  fs.writeFileSync(bad, 'model: m\nadapter:\n  rank: 4\n  alpah: 2\ntraining:\n  lr: 0\n');
  assert.throws(() => loadConfig(bad), (e: unknown) => {
    assert.ok(e instanceof LoraxsError);
    assert.equal(e.place?.line, 4);
    assert.equal(e.place?.column, 3);
    assert.equal(e.place?.detail, 'adapter.alpah');
    const formatted = e.format();
    assert.ok(formatted.startsWith(`${bad}:4:3: unknown key 'alpah' in adapter (did you mean 'alpha'?) (2 errors in this config)`), formatted);
    assert.ok(formatted.includes(`\n  ${bad}:6:7: training.lr must be > 0 (got 0)`), formatted);
    return true;
  });
  assert.throws(() => loadConfig(path.join(dir, 'missing.loraxs.yaml')), /cannot read the config file: no such file/);
});

test('keyRange and valueRange point at key paths for diagnostics made elsewhere', () => {
  const text = 'model: m\nadapter:\n  targets:\n    - query\n    - value\n    - dense\n  rank_pattern: {output.dense: 32}\n';
  assert.deepEqual(keyRange(text, ['adapter', 'targets', 2]), rangeOf(text, 5, 'dense'));
  assert.deepEqual(keyRange(text, ['adapter', 'targets']), rangeOf(text, 2, 'targets'));
  assert.deepEqual(keyRange(text, ['adapter', 'rank_pattern', 'output.dense']), rangeOf(text, 6, 'output.dense'));
  assert.deepEqual(valueRange(text, ['adapter', 'rank_pattern', 'output.dense']), rangeOf(text, 6, '32'));
  assert.deepEqual(valueRange(text, ['model']), rangeOf(text, 0, 'm', 1));
  assert.equal(keyRange(text, ['adapter', 'targets', 3]), null);
  assert.equal(keyRange(text, ['training', 'lr']), null);
});

test('the schema accepts the issue example, documents every key, and states the same defaults as defaults.ts', () => {
  const ajv = new Ajv({ allErrors: true, allowUnionTypes: true, strict: true });
  const validate = ajv.compile(LORAXS_SCHEMA);
  const yaml = require('yaml') as typeof import('yaml');
  assert.equal(validate(yaml.parse(ISSUE_EXAMPLE)), true, JSON.stringify(validate.errors));

  const undocumented: string[] = [];
  const closed: string[] = [];
  const walk = (node: SchemaNode, at: string): void => {
    if (!node.properties) return;
    if (node.additionalProperties !== false) closed.push(at || '(root)');
    for (const [k, child] of Object.entries(node.properties)) {
      if (!child.description) undocumented.push(`${at}${k}`);
      walk(child, `${at}${k}.`);
    }
  };
  walk(LORAXS_SCHEMA, '');
  assert.deepEqual(undocumented, []);
  assert.deepEqual(closed, []);

  const snake = (s: string): string => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  const expectDefaults = (section: string[], defaults: Record<string, unknown>): void => {
    for (const [k, v] of Object.entries(defaults)) {
      assert.deepEqual(schemaAt([...section, snake(k)])?.default, v, `${[...section, snake(k)].join('.')}`);
    }
  };
  expectDefaults(['adapter'], { ...ADAPTER_DEFAULTS });
  expectDefaults(['adapter', 'svd'], { ...SVD_DEFAULTS });
  expectDefaults(['training'], { ...TRAINING_DEFAULTS });
  expectDefaults(['analysis'], { ...ANALYSIS_DEFAULTS });
});

test('the analysis section is validated and filled', () => {
  const text = 'model: m\nadapter: {}\nanalysis:\n  fractions: [0, 0.5, 1.5]\n  regions: [top, side]\n';
  const { problems } = parseConfigText(text, '/x/a.loraxs.yaml');
  assert.deepEqual(problems.map((p) => p.message), [
    'analysis.fractions[2] must be <= 1 (got 1.5)',
    "analysis.regions[1] must be one of top, middle, bottom (got 'side')",
  ]);
  const ok = parseConfigText('model: m\nadapter: {}\nanalysis: {fractions: [0, 1], eval_limit: 32}\n', '/x/a.loraxs.yaml');
  assert.deepEqual(ok.config?.analysis, { fractions: [0, 1], regions: ['top', 'middle', 'bottom'], evalLimit: 32, seeds: 3 });
});

/**
 * The `loraxs` command line as users run it (the built dist/cli.js through bin/loraxs.js): help for every
 * command, params as JSON, and bad input giving one clear error that names the file and place, exit
 * status 1, no stack trace and no partial output.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cliRunner, tinyBertConfig } from './cli_harness';
import { makeWorkspace } from './workspace';


const loraxs = cliRunner('cli');

const GOOD = tinyBertConfig();

test('every command has --help, exits 0 and names its options', () => {
  const top = loraxs(['--help']);
  assert.equal(top.code, 0);
  for (const cmd of ['params', 'train', 'eval', 'predict', 'merge', 'export', 'generate', 'doctor']) {
    assert.match(top.stdout, new RegExp(`^  ${cmd} `, 'm'));
    const r = loraxs([cmd, '--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^Usage: loraxs ${cmd}`));
  }
  const bad = loraxs(['trian']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /unknown command 'trian'/);
});

test('params --json reads the tiny model from its files without training', () => {
  const ws = makeWorkspace('bert', 'seq-cls');
  const cfg = ws.config('p', GOOD);
  const r = loraxs(['params', cfg, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  const config = JSON.parse(fs.readFileSync(path.join(ws.model, 'config.json'), 'utf8'));
  const h = config.hidden_size;
  assert.equal(report.modules, 2 * config.num_hidden_layers);
  assert.equal(report.loraxs, report.modules * 16);
  assert.equal(report.lora, report.modules * 4 * (h + h));
  assert.equal(report.adapterBytes, 4 * report.loraxs);
});

test('train, eval, predict on the tiny model: outputs and exit codes', () => {
  const ws = makeWorkspace('bert', 'seq-cls');
  const cfg = ws.config('run', GOOD);
  const t = loraxs(['train', cfg, '--json']);
  assert.equal(t.code, 0, t.stderr);
  const result = JSON.parse(t.stdout);
  assert.equal(result.steps, 3); // 48 examples, batch 16, 1 epoch
  for (const f of ['adapter.safetensors', 'head.safetensors', 'loraxs_config.json', 'metrics.jsonl', 'last/adapter.safetensors']) {
    assert.ok(fs.existsSync(path.join(ws.dir, 'out', f)), f);
  }
  // R only: 4 · Σ r² bytes plus a header.
  const adapterBytes = fs.statSync(path.join(ws.dir, 'out', 'adapter.safetensors')).size;
  assert.ok(adapterBytes - 4 * result.adapterParams < 2048, `adapter.safetensors is ${adapterBytes} bytes`);
  const e = loraxs(['eval', cfg, '--adapter', path.join(ws.dir, 'out'), '--json']);
  assert.equal(e.code, 0, e.stderr);
  assert.ok(JSON.parse(e.stdout).accuracy >= 0);
  const p = loraxs(['predict', cfg, '--adapter', path.join(ws.dir, 'out'), '--input', path.join(ws.dir, 'dev.tsv'), '--out', path.join(ws.dir, 'pred.jsonl')]);
  assert.equal(p.code, 0, p.stderr);
  const preds = fs.readFileSync(path.join(ws.dir, 'pred.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(preds.length, 16);
  assert.ok(['0', '1'].includes(String(preds[0].label)));
});

interface BadCase {
  name: string;
  setup(ws: ReturnType<typeof makeWorkspace>): string; // returns the config path
  /** What stderr must show: the file (and place) and the problem. */
  expect: RegExp;
}

const cases: BadCase[] = [
  {
    name: 'a truncated safetensors file',
    setup: (ws) => {
      const f = path.join(ws.model, 'model.safetensors');
      fs.truncateSync(f, fs.statSync(f).size - 100);
      return ws.config('c', GOOD);
    },
    expect: /model\.safetensors.*(truncated|beyond|shorter|ends)/i,
  },
  {
    name: 'a corrupted safetensors header',
    setup: (ws) => {
      const f = path.join(ws.model, 'model.safetensors');
      const b = fs.readFileSync(f);
      b.write('#', 12);
      fs.writeFileSync(f, b);
      return ws.config('c', GOOD);
    },
    expect: /model\.safetensors.*(JSON|header|dtype)/i,
  },
  { name: 'an unknown config key', setup: (ws) => ws.config('c', GOOD.replace('  epochs: 1', '  epocs: 1')), expect: /c\.loraxs\.yaml:12:3: .*epocs.*epochs/ },
  { name: 'a rank above a module\'s smaller dimension', setup: (ws) => ws.config('c', GOOD.replace('rank: 4', 'rank: 4096')), expect: /c\.loraxs\.yaml:9:3: rank 4096.*exceeds/ },
  { name: 'a target that matches no module', setup: (ws) => ws.config('c', GOOD.replace('[query, value]', '[query, valeu]')), expect: /c\.loraxs\.yaml:10:3: target "valeu" matches no.*"value"/ },
  { name: 'a data file without the named column', setup: (ws) => ws.config('c', GOOD.replace('text: sentence', 'text: sentense')), expect: /train\.tsv.*no column "sentense".*sentence, label/ },
  {
    name: 'an empty data file',
    setup: (ws) => {
      ws.write('train.tsv', '');
      return ws.config('c', GOOD);
    },
    expect: /train\.tsv.*no rows/,
  },
];

for (const c of cases) {
  test(`bad input: ${c.name} -> one clear error, exit 1, no stack trace, no output`, () => {
    const ws = makeWorkspace('bert', 'seq-cls');
    const cfg = c.setup(ws);
    const r = loraxs(['train', cfg]);
    assert.equal(r.code, 1, `exit ${r.code}\n${r.stderr}`);
    const errors = r.stderr.split('\n').filter((l) => /error/.test(l));
    assert.equal(errors.length, 1, r.stderr);
    assert.match(errors[0], c.expect);
    assert.doesNotMatch(r.stderr, /^\s+at /m, 'a stack trace was printed');
    assert.equal(r.stdout, '');
    assert.equal(fs.existsSync(path.join(ws.dir, 'out')), false, 'the output folder was created');
  });
}

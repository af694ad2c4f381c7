/**
 * A config and data fuzz test: from a fixed seed, mutations of the committed corpus (test/fixtures/fuzz:
 * seed configs and their data files) are run through the `loraxs` CLI as users run it, each in its own
 * copy of a workspace with the tiny BERT checkpoint. A config that passes validation is trained (1-2
 * epochs on a few rows), so its model and data are loaded; one that does not is given to `params`.
 * No case may print "internal error" or a stack trace, or hang. The summary table goes to stdout.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fixtures, repoRoot, tempDir } from './paths';
import { makeWorkspace } from './workspace';
import { loadConfig } from '../sidecar/config/parse';

const SEED = 20240611;
const CASES = 72;
/** A case still running after this is a hang. */
const HANG_MS = 90000;
const corpus = path.join(fixtures, 'fuzz');
const bin = path.join(repoRoot, 'bin', 'loraxs.js');

/** mulberry32: a small deterministic PRNG. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const int = (r: Rand, lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1));

/** Values a mutated key may get (YAML source text). No path here leaves the case's folder. */
const VALUES = [
  '0', '-1', '1', '2', '3', '1.5', '1e9', '1.0e-30', '-0.0', '.nan', '.inf', '-.inf', '99999999999999999999', '0x10',
  'true', 'false', 'null', '~', "''", '""', '" "', '[]', '{}', '[1, 2]', '{a: 1}', '[query]', '[value, value]',
  'classification', 'regression', 'causal-lm', 'linear', 'cosine', 'constant', 'sgd', 'adamw', 'epoch', 'svd', 'svd-bottom',
  'exact', 'randomized', 'model', 'train.tsv', 'nonexistent', 'sub/dir', 'dev.tsv', 'noheader.tsv', 'dätä ✓', '"a\\tb"',
  `x${'y'.repeat(300)}`, '&anchor 4', '*anchor', '!!binary aGVsbG8=', '!!str 12', '2001-12-14', '|\n  block', '- item',
];
/** Keys an inserted line may use (valid ones in the wrong place, misspellings, junk). */
const KEYS = ['rank', 'rnak', 'lr', 'epochs', 'targets', 'max_length', 'label', 'text', 'columns', 'model', 'output', 'task', 'data',
  'training', 'adapter', 'analysis', 'foo', '"quoted key"', '? complex', '<<', '0'];
/** Characters an injected run may hold ('\xff' becomes a byte that is not UTF-8). */
const JUNK = ['\t', '\0', '\xff', '\xfe\xff', '{', '[', ']', '"', "'", ':', ': ', '- ', '#', '&a ', '*a', '!', '%', '@', '`', '\r', '\n', '\n  ', '\u2028', '\ufeff', '😀'];

function mutateConfig(r: Rand, text: string): { text: string; what: string } {
  let lines = text.split('\n');
  const kind = int(r, 0, 8);
  const valueLines = lines.map((l, i) => [l, i] as const).filter(([l]) => /^\s*[\w.-]+:\s*\S/.test(l) && !l.trim().startsWith('#'));
  switch (kind) {
    case 0: case 1: {
      const [line, i] = pick(r, valueLines);
      const v = pick(r, VALUES);
      lines[i] = line.replace(/:\s*.*$/, `: ${v}`);
      return { text: lines.join('\n'), what: `set ${line.trim().split(':')[0]} to ${JSON.stringify(v).slice(0, 30)}` };
    }
    case 2: {
      const i = int(r, 0, lines.length - 1);
      const gone = lines[i];
      lines.splice(i, 1);
      return { text: lines.join('\n'), what: `delete line ${i + 1} (${JSON.stringify(gone.trim()).slice(0, 30)})` };
    }
    case 3: {
      const i = int(r, 0, lines.length - 1);
      lines.splice(i, 0, lines[i]);
      return { text: lines.join('\n'), what: `duplicate line ${i + 1}` };
    }
    case 4: {
      const i = int(r, 0, lines.length);
      const indent = ' '.repeat(pick(r, [0, 2, 4, 1, 3]));
      const line = `${indent}${pick(r, KEYS)}: ${pick(r, VALUES)}`;
      lines.splice(i, 0, line);
      return { text: lines.join('\n'), what: `insert ${JSON.stringify(line).slice(0, 40)} at line ${i + 1}` };
    }
    case 5: {
      const at = int(r, 0, text.length);
      return { text: text.slice(0, at), what: `truncate at ${at}` };
    }
    case 6: {
      const at = int(r, 0, text.length);
      const junk = pick(r, JUNK);
      return { text: text.slice(0, at) + junk + text.slice(at), what: `inject ${JSON.stringify(junk)} at ${at}` };
    }
    case 7: {
      const i = int(r, 0, lines.length - 1);
      const delta = pick(r, [-3, -2, -1, 1, 2, 3]);
      lines[i] = delta > 0 ? ' '.repeat(delta) + lines[i] : lines[i].replace(new RegExp(`^ {0,${-delta}}`), '');
      return { text: lines.join('\n'), what: `indent line ${i + 1} by ${delta}` };
    }
    default: {
      // Numeric extremes on the training keys.
      const key = pick(r, ['rank', 'batch_size', 'epochs', 'max_length', 'lr', 'warmup_ratio', 'grad_accum_steps', 'eval_every', 'seed', 'alpha', 'init_std']);
      const v = pick(r, ['0', '-1', '1', '2', '1.5', '1e9', '100000', '1.0e-30', '.nan', '.inf', '4097']);
      const i = lines.findIndex((l) => l.trim().startsWith(`${key}:`));
      if (i >= 0) lines[i] = lines[i].replace(/:\s*.*$/, `: ${v}`);
      else {
        const section = ['rank', 'alpha', 'init_std'].includes(key) ? 'adapter:' : 'training:';
        const s = lines.findIndex((l) => l.startsWith(section));
        lines = s >= 0 ? [...lines.slice(0, s + 1), `  ${key}: ${v}`, ...lines.slice(s + 1)] : lines;
      }
      return { text: lines.join('\n'), what: `${key}: ${v}` };
    }
  }
}

function mutateData(r: Rand, text: string, file: string): { text: string; what: string } {
  const lines = text.split('\n');
  const body = lines.length > 2 ? int(r, 1, lines.length - 2) : 0;
  const ext = path.extname(file);
  const kinds = [
    () => ({ text: '', what: 'empty file' }),
    () => ({ text: `${lines[0]}\n`, what: 'header only' }),
    () => ({ text: text.slice(0, int(r, 0, text.length)), what: 'truncated' }),
    () => {
      lines.splice(body, 1);
      return { text: lines.join('\n'), what: `delete row ${body}` };
    },
    () => {
      lines.splice(body, 0, lines[0]);
      return { text: lines.join('\n'), what: 'header repeated as a row' };
    },
    () => {
      const at = int(r, 0, text.length);
      const junk = pick(r, ['"', '\t', ',', '\0', '\xff', '{', '\r\n', '\n\n', '\\', '\ufeff', '😀', '"unclosed']);
      return { text: text.slice(0, at) + junk + text.slice(at), what: `inject ${JSON.stringify(junk)}` };
    },
    () => {
      const sep = ext === '.csv' ? ',' : ext === '.jsonl' ? ', "extra": 1}' : '\t';
      lines[body] = ext === '.jsonl' ? lines[body].replace(/}\s*$/, sep) : `${lines[body]}${sep}extra`;
      return { text: lines.join('\n'), what: `extra field on row ${body}` };
    },
    () => {
      const label = pick(r, ['abc', '', '1e309', '-0', 'NaN', 'null', '3.25', '[1]', '{"a": 1}', '99999999999999999999']);
      lines[body] = ext === '.jsonl'
        ? lines[body].replace(/("(?:score|label)":\s*)[^,}]+/, `$1${/^[-\d.e]+$|^null$|^\[|^\{/.test(label) ? label : JSON.stringify(label)}`)
        : lines[body].replace(/[^\t,]*$/, label);
      return { text: lines.join('\n'), what: `label ${JSON.stringify(label)} on row ${body}` };
    },
    () => {
      const long = Array.from({ length: 3000 }, (_, i) => pick(r, ['good', 'bad', 'film', 'the', 'zzz'])).join(' ') + String(int(r, 0, 9));
      lines[body] = ext === '.jsonl' ? lines[body].replace(/("text":\s*)"[^"]*"/, `$1"${long}"`) : lines[body].replace(/^[^\t,]*/, long);
      return { text: lines.join('\n'), what: `a 3,000-word text on row ${body}` };
    },
    () => ({ text: text.replace(/\n/g, '\r\n'), what: 'CRLF line ends' }),
    () => ({ text: `\ufeff${text}`, what: 'a byte order mark' }),
    () => ({
      text: ext === '.jsonl' ? lines.map((l, i) => (i === body ? pick(r, ['[1, 2]', '"text"', 'null', '{"text": 5, "score": 1}', '{', '{"text": null}']) : l)).join('\n') : lines.map((l) => l.split(/\t|,/).slice(0, 1).join('')).join('\n'),
      what: ext === '.jsonl' ? `row ${body} not an object of fields` : 'every row cut to one field',
    }),
  ];
  return pick(r, kinds)();
}

/** UTF-8, except that the characters U+00FE and U+00FF stand for the single bytes 0xFE and 0xFF (not UTF-8). */
function toBytes(text: string): Buffer {
  return Buffer.concat(text.split(/([\xfe\xff])/).map((part) => (part === '\xfe' || part === '\xff' ? Buffer.from([part.charCodeAt(0)]) : Buffer.from(part, 'utf8'))));
}

interface Outcome {
  name: string;
  command: string;
  pastValidation: boolean;
  result: 'success' | 'clean error' | 'crash' | 'hang';
  detail: string;
}

/** What a crash looks like in the output: the words, or a stack frame. */
const CRASH = /internal error|^\s+at \S.*(\(|:\d+:\d+)|Unhandled|Segmentation|Aborted\(/im;

test(`fuzz: ${CASES} mutated configs and data files from seed ${SEED} through the CLI: no internal error, stack or hang`, { timeout: 30 * 60 * 1000 }, () => {
  assert.ok(fs.existsSync(path.join(repoRoot, 'dist', 'cli.js')), 'dist/cli.js is missing: run `npm run build` first');
  const seeds = fs.readdirSync(corpus).filter((f) => f.endsWith('.loraxs.yaml')).sort();
  const dataFiles = fs.readdirSync(corpus).filter((f) => !f.endsWith('.loraxs.yaml')).sort();
  assert.ok(seeds.length >= 3 && dataFiles.length >= 3, 'the corpus has seed configs and data files');
  const base = makeWorkspace('bert', 'seq-cls', { train: 4, dev: 2 });
  const cacheDir = tempDir('loraxs-fuzz-cache-');
  const r = rng(SEED);
  const outcomes: Outcome[] = [];
  const started = Date.now();

  for (let n = 0; n < CASES; n++) {
    const seedName = pick(r, seeds);
    const seedText = fs.readFileSync(path.join(corpus, seedName), 'utf8');
    const dir = tempDir(`loraxs-fuzz-${n}-`);
    fs.cpSync(base.model, path.join(dir, 'model'), { recursive: true });
    for (const f of dataFiles) fs.copyFileSync(path.join(corpus, f), path.join(dir, f));
    // A third of the cases mutate the data the config reads (the config stays valid), the rest the config.
    let configText = seedText;
    const what: string[] = [];
    if (n % 3 === 0) {
      const train = /^\s*train:\s*(\S+)/m.exec(seedText)![1];
      const file = path.join(dir, train);
      const m = mutateData(r, fs.readFileSync(file, 'utf8'), file);
      fs.writeFileSync(file, toBytes(m.text));
      what.push(`data ${train}: ${m.what}`);
    } else {
      for (let k = int(r, 1, 2); k > 0; k--) {
        const m = mutateConfig(r, configText);
        configText = m.text;
        what.push(m.what);
      }
    }
    const configFile = path.join(dir, 'case.loraxs.yaml');
    fs.writeFileSync(configFile, toBytes(configText));

    let pastValidation = false;
    let tiny = false;
    try {
      const c = loadConfig(configFile, { requireTraining: true });
      pastValidation = true;
      tiny = c.training.epochs <= 2 && c.training.maxLength <= 256 && (c.data ? fs.statSync(c.data.train, { throwIfNoEntry: false })?.size ?? 0 : 0) < 64 * 1024;
    } catch {
      pastValidation = false;
    }
    const args = pastValidation && tiny ? ['train', configFile] : ['params', configFile];
    const run = spawnSync(process.execPath, [bin, ...args], {
      cwd: dir, encoding: 'utf8', timeout: HANG_MS, killSignal: 'SIGKILL',
      env: { ...process.env, LORAXS_CACHE_DIR: cacheDir, LORAXS_BACKEND: 'wasm' },
    });
    const out = `${run.stdout ?? ''}\n${run.stderr ?? ''}`;
    let result: Outcome['result'];
    if ((run.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT') result = 'hang';
    else if (run.signal !== null || CRASH.test(out) || run.status === 70) result = 'crash';
    else result = run.status === 0 ? 'success' : 'clean error';
    const lastLine = (run.stderr ?? '').trim().split('\n').filter((l) => l.trim()).pop() ?? '';
    outcomes.push({ name: `#${n} ${seedName}: ${what.join('; ')}`, command: args[0], pastValidation, result, detail: result === 'crash' || result === 'hang' ? out.slice(0, 3000) : lastLine.slice(0, 200) });
    fs.rmSync(dir, { recursive: true, force: true });
  }

  const count = (f: (o: Outcome) => boolean): number => outcomes.filter(f).length;
  const rows: Array<[string, number]> = [
    ['cases', outcomes.length],
    ['past config validation (model/data loaded)', count((o) => o.pastValidation)],
    ['  trained', count((o) => o.command === 'train')],
    ['clean errors', count((o) => o.result === 'clean error')],
    ['successes', count((o) => o.result === 'success')],
    ['crashes', count((o) => o.result === 'crash')],
    ['hangs', count((o) => o.result === 'hang')],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  console.log(`\nfuzz summary (seed ${SEED}, ${((Date.now() - started) / 1000).toFixed(0)} s)\n${rows.map(([k, v]) => `  ${k.padEnd(width)}  ${String(v).padStart(4)}`).join('\n')}`);
  for (const o of outcomes) console.log(`  [${o.result}${o.pastValidation ? ', valid' : ''}, ${o.command}] ${o.name} -> ${o.detail.split('\n')[0]}`);

  const bad = outcomes.filter((o) => o.result === 'crash' || o.result === 'hang');
  assert.deepEqual(bad.map((o) => `${o.result}: ${o.name}\n${o.detail}`), [], 'cases that crashed or hung');
  assert.ok(outcomes.length >= 60);
  assert.ok(count((o) => o.pastValidation) >= 20, `only ${count((o) => o.pastValidation)} cases got past config validation`);
});

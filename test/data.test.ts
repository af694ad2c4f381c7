/**
 * Data files → tables → examples → batches: JSONL/CSV/TSV parsing (GLUE files as they ship, and small
 * files written here), tokenisation with real tokenizers (a tiny WordLevel tokenizer.json written here,
 * and stories260k's when ../shared is present), label mapping, truncation, loss masks and batching.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { glue, stories260k, tempDir, needsShared } from './paths';
import { readTable, type DataTable } from '../sidecar/io/data_table';
import { buildExamples, sortLabelNames, type ExampleSpec } from '../sidecar/io/examples';
import { loadTokenizer, type TextTokenizer } from '../sidecar/io/tokenizer';
import { makeBatch, epochOrder, batchIndices, batchesPerEpoch, IGNORE_INDEX } from '../sidecar/train/batching';
import { LoraxsError } from '../sidecar/errors';
import { Rng } from '../sidecar/rng';

const dir = tempDir('loraxs-data-');
let counter = 0;
function write(name: string, content: string | Buffer): string {
  const file = path.join(dir, `${counter++}-${name}`);
  fs.writeFileSync(file, content);
  return file;
}

/** Asserts fn throws a LoraxsError whose message matches and whose place has the given line. */
function throwsAt(fn: () => unknown, message: RegExp, line: number | undefined, file?: string): LoraxsError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof LoraxsError, `expected a LoraxsError, got ${caught}`);
  assert.match(caught.message, message);
  assert.equal(caught.place?.line, line, `line of "${caught.format()}"`);
  if (file) assert.equal(caught.place?.file, file);
  return caught;
}

// ---------------------------------------------------------------------------------------------- tables

test('JSONL: objects per line, blank lines skipped, line numbers kept, nested values as JSON text', () => {
  const file = write('a.jsonl', '{"text": "hi", "label": 1}\n\n  \n{"text": "yo", "label": "x", "extra": [1, 2]}\r\n{"text": null, "label": true}');
  const t = readTable(file, {});
  assert.deepEqual(t.columns, ['text', 'label', 'extra']);
  assert.deepEqual(t.rows, [{ text: 'hi', label: 1 }, { text: 'yo', label: 'x', extra: '[1,2]' }, { text: null, label: true }]);
  assert.deepEqual([0, 1, 2].map(t.lineOf), [1, 4, 5]);
});

test('JSONL: a bad line names file:line', () => {
  const file = write('bad.jsonl', '{"a": 1}\n{"a": 2,}\n');
  const e = throwsAt(() => readTable(file, {}), /invalid JSON/, 2, file);
  assert.match(e.format(), new RegExp(`${path.basename(file)}:2: invalid JSON`));
  throwsAt(() => readTable(write('arr.jsonl', '[1, 2]\n'), {}), /expected a JSON object per line, got an array/, 1);
});

test('CSV: RFC 4180 quoting, BOM, CRLF, a quoted field spanning lines, line numbers', () => {
  const file = write('a.csv', '\ufeffsentence,label\r\n"He said ""hi"", then left",1\r\n\r\n"two\r\nlines",0\r\nplain,1');
  const t = readTable(file, {});
  assert.deepEqual(t.columns, ['sentence', 'label']);
  assert.deepEqual(t.rows.map((r) => r.sentence), ['He said "hi", then left', 'two\nlines', 'plain']);
  assert.deepEqual(t.rows.map((r) => r.label), ['1', '0', '1']);
  assert.deepEqual([0, 1, 2].map(t.lineOf), [2, 4, 6]);
});

test('CSV/TSV: wrong field counts and broken quotes name the line', () => {
  throwsAt(() => readTable(write('f.csv', 'a,b\n1,2\n3\n'), {}), /expected 2 fields \(a, b\), got 1/, 3);
  throwsAt(() => readTable(write('q.csv', 'a,b\n1,2\n"3,4\n'), {}), /invalid CSV/, 3);
  throwsAt(() => readTable(write('f.tsv', 'a\tb\n1\t2\t3\n'), {}), /expected 2 fields \(a, b\), got 3/, 2);
  throwsAt(() => readTable(write('h.tsv', 'x\ty\tz\n1\t2\n'), { columns: ['x', 'y', 'z'] }), /got 2 \(data.columns/, 2);
});

test('TSV: quoting off, so unbalanced quotes stay text; header-less with columns; CRLF', () => {
  const file = write('a.tsv', 'id\t"quoted" text\r\n1\tsay "hi\r\n2\t"whole"\r\n');
  const t = readTable(file, {});
  assert.deepEqual(t.columns, ['id', '"quoted" text']);
  assert.deepEqual(t.rows, [{ id: '1', '"quoted" text': 'say "hi' }, { id: '2', '"quoted" text': '"whole"' }]);
  const h = readTable(write('b.tsv', 'src\t1\t\tA sentence.\nsrc\t0\t*\tBad sentence'), { columns: ['source', 'label', 'mark', 'sentence'] });
  assert.equal(h.rows.length, 2);
  assert.deepEqual(h.rows[1], { source: 'src', label: '0', mark: '*', sentence: 'Bad sentence' });
  assert.equal(h.lineOf(1), 2);
});

test('empty files, header-only files, unknown extensions and missing files are clear errors', () => {
  const empty = write('e.tsv', '');
  throwsAt(() => readTable(empty, {}), /no rows/, undefined, empty);
  throwsAt(() => readTable(write('e.jsonl', '\n\n'), {}), /no rows/, undefined);
  throwsAt(() => readTable(write('h.csv', 'a,b\n'), {}), /no rows \(the file has only a header row\)/, undefined);
  throwsAt(() => readTable(write('x.txt', 'a\n'), {}), /unsupported data file extension ".txt"/, undefined);
  throwsAt(() => readTable(path.join(dir, 'absent.tsv'), {}), /cannot read data file/, undefined);
  throwsAt(() => readTable(write('d.csv', 'a,a\n1,2\n'), {}), /names column "a" twice/, 1);
});

test('GLUE SST-2 dev: 872 rows, header sentence/label, 444 positive', { skip: needsShared(glue) }, () => {
  const t = readTable(path.join(glue, 'SST-2', 'dev.tsv'), {});
  assert.deepEqual(t.columns, ['sentence', 'label']);
  assert.equal(t.rows.length, 872);
  assert.equal(t.rows[0].sentence, "it 's a charming and often affecting journey . ");
  assert.equal(t.rows.filter((r) => r.label === '1').length, 444);
  assert.equal(t.lineOf(871), 873);
});

test('GLUE CoLA train: header-less with data.columns, 8551 rows, 6023 acceptable', { skip: needsShared(glue) }, () => {
  const t = readTable(path.join(glue, 'CoLA', 'train.tsv'), { columns: ['source', 'label', 'mark', 'sentence'] });
  assert.equal(t.rows.length, 8551);
  assert.equal(t.rows.filter((r) => r.label === '1').length, 6023);
  assert.equal(t.rows[0].sentence, "Our friends won't buy this analysis, let alone the next one we propose.");
  assert.equal(t.lineOf(0), 1);
  // CoLA dev's last line has no trailing newline: still 1043 rows.
  assert.equal(readTable(path.join(glue, 'CoLA', 'dev.tsv'), { columns: ['source', 'label', 'mark', 'sentence'] }).rows.length, 1043);
});

test('GLUE MRPC train: BOM stripped from the header, unbalanced quotes kept', { skip: needsShared(glue) }, () => {
  const t = readTable(path.join(glue, 'MRPC', 'train.tsv'), {});
  assert.deepEqual(t.columns, ['Quality', '#1 ID', '#2 ID', '#1 String', '#2 String']);
  assert.equal(t.rows.length, 3668);
  assert.equal(t.rows[0]['#1 String'], 'Amrozi accused his brother, whom he called "the witness", of deliberately distorting his evidence.');
  const dev = readTable(path.join(glue, 'MRPC', 'dev.tsv'), {});
  assert.equal(dev.rows.length, 408);
  // This dev row's second sentence opens a quote it never closes.
  assert.equal(dev.rows[0]['#2 String'], '"The foodservice pie business does not fit our long-term growth strategy.');
});

// ---------------------------------------------------------------------------------------------- examples

/** A tiny BERT-like WordLevel tokenizer: [CLS] A [SEP] (B [SEP]), type ids 0 then 1. */
function tinyTokenizer(): TextTokenizer {
  const words = ['[UNK]', '[PAD]', '[CLS]', '[SEP]', '[EOS]', 'a', 'b', 'c', 'd', 'e', 'f', 'good', 'bad', 'movie', 'q', 'r'];
  const vocab = Object.fromEntries(words.map((w, i) => [w, i]));
  const special = (t: string) => ({ id: vocab[t], content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const json = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: ['[UNK]', '[PAD]', '[CLS]', '[SEP]', '[EOS]'].map(special),
    normalizer: null,
    pre_tokenizer: { type: 'WhitespaceSplit' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: '[SEP]', type_id: 1 } }],
      special_tokens: { '[CLS]': { id: '[CLS]', ids: [2], tokens: ['[CLS]'] }, '[SEP]': { id: '[SEP]', ids: [3], tokens: ['[SEP]'] } },
    },
    decoder: null,
    model: { type: 'WordLevel', vocab, unk_token: '[UNK]' },
  };
  const tokDir = fs.mkdtempSync(path.join(dir, 'tok-'));
  fs.writeFileSync(path.join(tokDir, 'tokenizer.json'), JSON.stringify(json));
  fs.writeFileSync(path.join(tokDir, 'tokenizer_config.json'), JSON.stringify({ pad_token: '[PAD]', eos_token: '[EOS]' }));
  return loadTokenizer(tokDir);
}
const tiny = tinyTokenizer();
const spec = (over: Partial<ExampleSpec>): ExampleSpec =>
  ({ task: 'classification', text: 'text', prompt: null, response: null, label: 'label', maxLength: 16, ...over });

function table(name: string, content: string): DataTable {
  return readTable(write(name, content), {});
}

test('tiny tokenizer behaves as a BERT template (sanity of the fixture)', () => {
  assert.deepEqual(tiny.encode('a b', { pair: 'c' }), { ids: [2, 5, 6, 3, 7, 3], typeIds: [0, 0, 0, 0, 1, 1] });
  assert.equal(tiny.padId, 1);
  assert.equal(tiny.eosId, 4);
});

test('classification: single texts, string labels sorted, validation uses the training names', () => {
  const train = table('t.jsonl', '{"text":"good movie","label":"pos"}\n{"text":"bad movie","label":"neg"}\n{"text":"a","label":"pos"}\n');
  const { examples, labelNames } = buildExamples(train, spec({}), tiny, train.file);
  assert.deepEqual(labelNames, ['neg', 'pos']);
  assert.deepEqual(examples.map((e) => e.label), [1, 0, 1]);
  assert.deepEqual(examples[0], { inputIds: [2, 11, 13, 3], typeIds: [0, 0, 0, 0], label: 1 });
  const dev = table('d.jsonl', '{"text":"b","label":"neg"}\n{"text":"c","label":"neutral"}\n');
  throwsAt(() => buildExamples(dev, spec({ labelNames: labelNames! }), tiny, dev.file), /label "neutral" is not one of the training labels \(neg, pos\)/, 2, dev.file);
});

test('classification: integer labels sort numerically, and JSON numbers equal TSV strings', () => {
  assert.deepEqual(sortLabelNames(['10', '2', '1']), ['1', '2', '10']);
  assert.deepEqual(sortLabelNames(['b', 'a', '10', '2']), ['10', '2', 'a', 'b']);
  const train = table('n.tsv', 'text\tlabel\na\t10\nb\t2\nc\t1\n');
  const out = buildExamples(train, spec({}), tiny, train.file);
  assert.deepEqual(out.labelNames, ['1', '2', '10']);
  assert.deepEqual(out.examples.map((e) => e.label), [2, 1, 0]);
  const dev = table('n.jsonl', '{"text":"d","label":10}\n');
  assert.equal(buildExamples(dev, spec({ labelNames: out.labelNames! }), tiny, dev.file).examples[0].label, 2);
  throwsAt(() => buildExamples(table('f.jsonl', '{"text":"d","label":1.5}\n'), spec({}), tiny, 'f'), /must be a string or an integer/, 1);
  throwsAt(() => buildExamples(table('e.tsv', 'text\tlabel\nd\t\n'), spec({}), tiny, 'e'), /class label "label" is empty/, 2);
});

test('pairs: type ids, and longest-first truncation that keeps the special tokens', () => {
  const t = table('p.tsv', 's1\ts2\tlabel\na b c d e\tf q\t1\na\tb c d e f q r\t0\n');
  const out = buildExamples(t, spec({ text: ['s1', 's2'], maxLength: 7 }), tiny, t.file);
  // 5 + 2 + 3 specials = 10 > 7: the longer first text loses 3 → [CLS] a b [SEP] f q [SEP].
  assert.deepEqual(out.examples[0].inputIds, [2, 5, 6, 3, 10, 14, 3]);
  assert.deepEqual(out.examples[0].typeIds, [0, 0, 0, 0, 1, 1, 1]);
  // 1 + 7 + 3 = 11 > 7: the second text keeps 3 → [CLS] a [SEP] b c d [SEP].
  assert.deepEqual(out.examples[1].inputIds, [2, 5, 3, 6, 7, 8, 3]);
  // Equal lengths: 4 + 4 + 3 = 11 > 8 → 2 and 3: the second keeps the odd token, as transformers' fast
  // (Rust) tokenizers do (test/fixtures/tiny/bert/pairs_reference.json; the slow Python tokenizers differ).
  const eq = table('q.tsv', 's1\ts2\tlabel\na b c d\te f q r\t1\n');
  assert.deepEqual(buildExamples(eq, spec({ text: ['s1', 's2'], maxLength: 8 }), tiny, eq.file).examples[0].inputIds, [2, 5, 6, 3, 9, 10, 14, 3]);
  // A single text keeps [CLS] ... [SEP].
  const single = table('s.tsv', 'text\tlabel\na b c d e f\t1\n');
  assert.deepEqual(buildExamples(single, spec({ maxLength: 4 }), tiny, single.file).examples[0].inputIds, [2, 5, 6, 3]);
});

test('regression targets are floats; bad targets name the line', () => {
  const t = table('r.csv', 'text,label\na,3.25\nb,-1e-2\n');
  const out = buildExamples(t, spec({ task: 'regression' }), tiny, t.file);
  assert.deepEqual(out.examples.map((e) => e.target), [3.25, -0.01]);
  assert.equal(out.labelNames, null);
  throwsAt(() => buildExamples(table('r2.csv', 'text,label\na,1\nb,high\n'), spec({ task: 'regression' }), tiny, 'r2'), /finite number, got "high"/, 3);
});

test('missing columns list the columns that exist; empty text names its line', () => {
  const t = table('m.tsv', 'sentence\tlabel\na\t1\n\t0\n');
  const e = throwsAt(() => buildExamples(t, spec({}), tiny, t.file), /no column "text" \(named by data.text\); the columns are: sentence, label/, undefined, t.file);
  assert.equal(e.place?.detail, 'text');
  throwsAt(() => buildExamples(t, spec({ text: 'sentence', label: 'gold' }), tiny, t.file), /no column "gold"/, undefined);
  throwsAt(() => buildExamples(t, spec({ text: 'sentence' }), tiny, t.file), /field "sentence" is empty/, 3, t.file);
  const j = table('m.jsonl', '{"text":"a","label":1}\n{"label":0}\n');
  throwsAt(() => buildExamples(j, spec({}), tiny, j.file), /this row has no field "text"/, 2);
});

test('causal LM with prompt/response: prompt with specials + response + EOS, loss on response and EOS', () => {
  const t = table('pr.jsonl', '{"q":"a b","a":"c d"}\n{"q":"a b c","a":"d e f q r"}\n');
  const s = spec({ task: 'causal-lm', text: null, prompt: 'q', response: 'a', label: null, maxLength: 8 });
  const out = buildExamples(t, s, tiny, t.file);
  // encode("a b") = [CLS] a b [SEP]; + c d + EOS.
  assert.deepEqual(out.examples[0].inputIds, [2, 5, 6, 3, 7, 8, 4]);
  // Position t counts when inputIds[t + 1] is c, d or EOS: t = 3, 4, 5.
  assert.deepEqual(out.examples[0].lossMask, [0, 0, 0, 1, 1, 1, 0]);
  // Second: 5 + 5 + 1 = 11 tokens, truncated to 8 (EOS cut off): targets d e f q.
  assert.deepEqual(out.examples[1].inputIds, [2, 5, 6, 7, 3, 8, 9, 10]);
  assert.deepEqual(out.examples[1].lossMask, [0, 0, 0, 0, 1, 1, 1, 0]);
  throwsAt(() => buildExamples(t, { ...s, maxLength: 4 }, tiny, t.file), /prompt alone is 4 tokens/, 1);
});

test('causal LM with stories260k: BOS from the post-processor, no EOS, loss on every next token', { skip: needsShared(stories260k) }, () => {
  const tok = loadTokenizer(stories260k);
  const t = table('lm.jsonl', '{"text":"Once upon a time"}\n{"text":"Once upon a time there was a little girl named Lily."}\n');
  const out = buildExamples(t, spec({ task: 'causal-lm', label: null, maxLength: 8 }), tok, t.file);
  assert.deepEqual(out.examples[0].inputIds, [1, 403, 407, 261, 378]);
  assert.deepEqual(out.examples[0].lossMask, [1, 1, 1, 1, 0]);
  assert.equal(out.examples[1].inputIds.length, 8);
  assert.equal(out.examples[1].inputIds[0], 1);
  assert.ok(!out.examples[1].inputIds.includes(tok.eosId!));
  // prompt/response: encode(prompt) keeps its BOS, the response has none, EOS closes it.
  const pr = table('pr2.jsonl', '{"p":"Once upon","r":"a time"}\n');
  const ex = buildExamples(pr, spec({ task: 'causal-lm', text: null, prompt: 'p', response: 'r', label: null, maxLength: 32 }), tok, pr.file).examples[0];
  const resp = tok.encode('a time', { addSpecialTokens: false }).ids;
  assert.deepEqual(ex.inputIds, [1, 403, 407, ...resp, tok.eosId!]);
  assert.deepEqual(ex.lossMask, [0, 0, ...resp.map(() => 1), 1, 0]);
});

// ---------------------------------------------------------------------------------------------- batching

test('batches pad each batch to its own longest sequence, with masks and type ids', () => {
  const t = table('b.tsv', 's1\ts2\tlabel\na\tb\t1\na b c\td e\t0\nq\tr\t1\n');
  const { examples } = buildExamples(t, spec({ text: ['s1', 's2'] }), tiny, t.file);
  const b = makeBatch(examples, [1, 0], tiny.padId);
  assert.equal(b.seqLen, 8);
  assert.deepEqual([...b.inputIds], [2, 5, 6, 7, 3, 8, 9, 3, /**/ 2, 5, 3, 6, 3, 1, 1, 1]);
  assert.deepEqual([...b.attentionMask], [1, 1, 1, 1, 1, 1, 1, 1, /**/ 1, 1, 1, 1, 1, 0, 0, 0]);
  assert.deepEqual([...b.typeIds], [0, 0, 0, 0, 0, 1, 1, 1, /**/ 0, 0, 0, 1, 1, 0, 0, 0]);
  assert.deepEqual([...b.labels!], [0, 1]);
  assert.equal(b.numTokens, 13);
  assert.equal(makeBatch(examples, [2], tiny.padId).seqLen, 5);
});

test('causal LM labels: inputs shifted left, -100 at padding, masked prompt and last position', () => {
  const t = table('c.jsonl', '{"q":"a","a":"b c"}\n{"q":"a b c","a":"d"}\n');
  const { examples } = buildExamples(t, spec({ task: 'causal-lm', text: null, prompt: 'q', response: 'a', label: null }), tiny, t.file);
  // ex0: [CLS] a [SEP] b c EOS (6); ex1: [CLS] a b c [SEP] d EOS (7).
  const b = makeBatch(examples, [0, 1], tiny.padId);
  const X = IGNORE_INDEX;
  assert.equal(b.seqLen, 7);
  assert.deepEqual([...b.inputIds], [2, 5, 3, 6, 7, 4, 1, /**/ 2, 5, 6, 7, 3, 8, 4]);
  assert.deepEqual([...b.lmLabels!], [X, X, 6, 7, 4, X, X, /**/ X, X, X, X, 8, 4, X]);
  assert.equal(b.numTargets, 5);
  assert.equal(b.labels, undefined);
});

test('epoch order and batch split: last partial batch kept; shuffle is seeded and resumable', () => {
  assert.deepEqual(epochOrder(5, false, new Rng(0)), [0, 1, 2, 3, 4]);
  assert.deepEqual(batchIndices([0, 1, 2, 3, 4], 2), [[0, 1], [2, 3], [4]]);
  assert.deepEqual(batchIndices([0, 1, 2], 32), [[0, 1, 2]]);
  assert.equal(batchesPerEpoch(5, 2), 3);
  const rng = new Rng(7);
  const first = epochOrder(100, true, rng);
  const saved = rng.state();
  const second = epochOrder(100, true, rng);
  assert.deepEqual([...first].sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i));
  assert.notDeepEqual(first, second);
  assert.deepEqual(epochOrder(100, true, new Rng(saved)), second);
  assert.deepEqual(epochOrder(100, true, new Rng(7)), first);
});

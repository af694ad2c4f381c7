/**
 * Writing a (merged) model as a Hugging Face folder that transformers' Auto classes load: config.json
 * (updated for the task head), the weights in the source dtype (F32, or F16/BF16 rounded to nearest even)
 * as `model.safetensors`, or shards `model-0000i-of-0000n.safetensors` + `model.safetensors.index.json`
 * beyond 2 GB, and the tokenizer files copied from the base model. The folder is written atomically
 * (folder_swap.ts; `write` adds the marker `.loraxs-output` and refuses to replace a folder LoRA-XS did not write).
 *
 * When the merged model holds exactly the source file's tensors (same names, dtypes and shapes: a decoder
 * merged for causal LM, one weight file), the file is copied (fs.copyFile, which the kernel does without
 * passing the bytes through Node) and only the merged tensors' bytes are written over it, in place
 * (`patchedModelFile`); otherwise every tensor is written anew.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as tf from '../backend/tf';
import { bytesToFloat32, float32ToDtype, writeSafetensorsStreaming, type Dtype, type LazyTensorToWrite, type SafetensorsHeader } from '../io/safetensors';
import type { ModelType } from '../models/types';
import type { Task } from '../config/types';
import { writeFolderAtomically, type FolderWriteOptions } from './folder_swap';

/** Shards are cut before a tensor that would take one past this size. */
export const MAX_SHARD_BYTES = 2 * 1024 ** 3;

/** Files copied from the base model when present. */
export const TOKENIZER_FILES = [
  'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json', 'vocab.txt', 'vocab.json',
  'merges.txt', 'tokenizer.model', 'sentencepiece.bpe.model', 'spiece.model', 'generation_config.json', 'chat_template.jinja',
];

export type HfDtype = 'float32' | 'float16' | 'bfloat16';

/**
 * A tensor to write: on the backend, float32 values, or bytes as stored in a source file (`read` is
 * called when the tensor is written; bytes already in the output dtype are copied as they are).
 */
export type TensorSource = tf.Tensor | { shape: number[]; data: Float32Array } | StoredBytes;

export interface StoredBytes {
  shape: number[];
  dtype: Dtype;
  read(): Buffer;
}

export interface HfModelToWrite {
  /** config.json content (already updated for the head: see configForHead). */
  config: Record<string, unknown>;
  /** Tensors by the names transformers' task class uses, in the order to write them. */
  tensors: Map<string, TensorSource>;
  dtype: HfDtype;
  /** The base model folder, to copy tokenizer files from. */
  copyFrom?: string;
  /** The chat template the adapter was trained with: written as chat_template.jinja (over the base's). */
  chatTemplate?: string;
  /** Override for tests. */
  maxShardBytes?: number;
  /**
   * The base model's weight file, when it is its only one: if `tensors` are exactly its tensors (names,
   * dtypes in the output dtype, shapes), it is copied and the tensors that are not stored bytes (the
   * merged ones) are written over their ranges. Set `false` to always write every tensor (tests compare).
   */
  source?: SafetensorsHeader | false;
  /** The marker and the replace rule (the job runner's merge sets both). */
  write?: FolderWriteOptions;
}

const CLASS_PREFIX: Record<ModelType, string> = {
  bert: 'Bert', roberta: 'Roberta', llama: 'Llama', mistral: 'Mistral', qwen2: 'Qwen2', gemma: 'Gemma', use_lite: 'UseLite',
};

/**
 * config.json for the task head: `architectures` names the task class (e.g.
 * RobertaForSequenceClassification, LlamaForCausalLM); classification sets id2label/label2id (which is how
 * transformers stores num_labels); regression sets one label and problem_type "regression".
 */
export function configForHead(
  raw: Record<string, unknown>,
  modelType: ModelType,
  task: Task,
  id2label: Record<string, string> | null,
  numLabels: number | null,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...raw };
  if (task === 'causal-lm') {
    out.architectures = [`${CLASS_PREFIX[modelType]}ForCausalLM`];
    return out;
  }
  out.architectures = [`${CLASS_PREFIX[modelType]}ForSequenceClassification`];
  const n = task === 'regression' ? 1 : numLabels ?? Object.keys(id2label ?? {}).length;
  const labels: Record<string, string> = {};
  for (let i = 0; i < n; i++) labels[String(i)] = id2label?.[String(i)] ?? `LABEL_${i}`;
  out.id2label = labels;
  out.label2id = Object.fromEntries(Object.entries(labels).map(([k, v]) => [v, Number(k)]));
  if (task === 'regression') out.problem_type = 'regression';
  else if (out.problem_type === 'regression') delete out.problem_type;
  return out;
}

const ST_DTYPE = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' } as const;

function isTensor(src: TensorSource): src is tf.Tensor {
  return typeof (src as tf.Tensor).dataSync === 'function';
}

/** The tensor as written: its bytes in the output dtype are made (read, downloaded, converted) when written. */
function toWrite(name: string, src: TensorSource, dtype: HfDtype): LazyTensorToWrite {
  const target = ST_DTYPE[dtype];
  const bytes = (): ArrayBufferView => {
    if ('read' in src) {
      const stored = src.read();
      return src.dtype === target ? stored : float32ToDtype(bytesToFloat32(stored, src.dtype), target);
    }
    return float32ToDtype(isTensor(src) ? (src.dataSync() as Float32Array) : src.data, target);
  };
  return { name, dtype: target, shape: [...src.shape], bytes };
}

/**
 * Whether `tensors` are exactly the source file's tensors, stored in the output dtype: then the file can be
 * copied with the computed tensors written over their byte ranges.
 */
export function canPatchSource(source: SafetensorsHeader, tensors: Map<string, TensorSource>, dtype: HfDtype): boolean {
  if (source.tensors.size !== tensors.size) return false;
  for (const [name, src] of tensors) {
    const entry = source.tensors.get(name);
    if (!entry || entry.dtype !== ST_DTYPE[dtype] || entry.shape.join() !== src.shape.join()) return false;
    if ('read' in src && src.dtype !== entry.dtype) return false;
  }
  return true;
}

/** Copies the source file to `file` and writes the tensors that are not stored bytes over their ranges. */
function patchedModelFile(file: string, source: SafetensorsHeader, tensors: Map<string, TensorSource>, dtype: HfDtype): void {
  fs.copyFileSync(source.file, file);
  const fd = fs.openSync(file, 'r+');
  try {
    for (const [name, src] of tensors) {
      if ('read' in src) continue; // the source's own bytes, already in place
      const entry = source.tensors.get(name)!;
      const bytes = toWrite(name, src, dtype).bytes();
      const view = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      if (view.byteLength !== entry.end - entry.begin) throw new Error(`internal error: ${name} has ${view.byteLength} bytes, its range ${entry.end - entry.begin}`);
      for (let done = 0; done < view.byteLength;) done += fs.writeSync(fd, view, done, view.byteLength - done, source.dataStart + entry.begin + done);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes the folder; returns the weight files written (relative names). */
export function writeHfModel(outDir: string, model: HfModelToWrite): string[] {
  if (model.source && canPatchSource(model.source, model.tensors, model.dtype)) {
    const source = model.source;
    writeFolderAtomically(outDir, (tmp) => {
      patchedModelFile(path.join(tmp, 'model.safetensors'), source, model.tensors, model.dtype);
      writeOtherFiles(tmp, model);
    }, model.write);
    return ['model.safetensors'];
  }
  const bytesPer = model.dtype === 'float32' ? 4 : 2;
  const limit = model.maxShardBytes ?? MAX_SHARD_BYTES;
  // Plan shards by size without converting anything yet.
  const shards: string[][] = [[]];
  let current = 0;
  let total = 0;
  for (const [name, src] of model.tensors) {
    const size = src.shape.reduce((a: number, b: number) => a * b, 1) * bytesPer;
    if (current > 0 && current + size > limit) {
      shards.push([]);
      current = 0;
    }
    shards[shards.length - 1].push(name);
    current += size;
    total += size;
  }
  const n = shards.length;
  const fileNames = n === 1 ? ['model.safetensors'] : shards.map((_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`);
  writeFolderAtomically(outDir, (tmp) => {
    const weightMap: Record<string, string> = {};
    shards.forEach((names, i) => {
      const tensors = names.map((name) => toWrite(name, model.tensors.get(name)!, model.dtype));
      writeSafetensorsStreaming(path.join(tmp, fileNames[i]), tensors, { format: 'pt' });
      for (const name of names) weightMap[name] = fileNames[i];
    });
    if (n > 1) {
      fs.writeFileSync(path.join(tmp, 'model.safetensors.index.json'),
        JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + '\n');
    }
    writeOtherFiles(tmp, model);
  }, model.write);
  return fileNames;
}

/** config.json, the tokenizer files copied from the base model, the chat template. */
function writeOtherFiles(tmp: string, model: HfModelToWrite): void {
  fs.writeFileSync(path.join(tmp, 'config.json'), JSON.stringify(model.config, null, 2) + '\n');
  if (model.copyFrom) {
    for (const f of TOKENIZER_FILES) {
      const src = path.join(model.copyFrom, f);
      if (fs.existsSync(src)) fs.copyFileSync(src, path.join(tmp, f));
    }
  }
  if (model.chatTemplate !== undefined) fs.writeFileSync(path.join(tmp, 'chat_template.jinja'), model.chatTemplate);
}

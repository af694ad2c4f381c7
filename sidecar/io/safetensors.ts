/**
 * The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian u64 header
 * length N, N bytes of JSON header `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__":
 * {string: string}}`, then the data section. Offsets are relative to the start of the data section; tensor
 * bytes are little-endian and row-major.
 *
 * Reading is strict: every inconsistency is a LoraxsError naming the file and the tensor. Headers are read
 * without touching tensor data, so a multi-GB checkpoint can be inspected in milliseconds.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { LoraxsError, assert } from '../errors';
import { writeFileAtomic } from './atomic_write';
import { bf16ArrayToFloat32, f16ArrayToFloat32, float32ArrayToBf16, float32ArrayToF16 } from './float16';

export type Dtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** Bytes per element of each dtype. */
export const DTYPE_SIZE: Readonly<Record<Dtype, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

/** Floating dtypes (the ones `readTensorFloat32` converts). */
export const FLOAT_DTYPES: readonly Dtype[] = ['F64', 'F32', 'F16', 'BF16'];

/** Headers larger than this are refused (the reference implementation's limit). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorEntry {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Byte offsets relative to the start of the data section (`dataStart`). */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  file: string;
  /** N, the JSON header's length in bytes. */
  headerLength: number;
  /** 8 + N: where the data section starts in the file. */
  dataStart: number;
  fileSize: number;
  /** In the header's order. */
  tensors: Map<string, TensorEntry>;
  metadata: Record<string, string>;
}

export interface TensorToWrite {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** The raw elements, little-endian; byteLength must be product(shape) × DTYPE_SIZE[dtype]. */
  data: ArrayBufferView;
}

assert(os.endianness() === 'LE', () => 'safetensors I/O assumes a little-endian machine');

function isDtype(s: unknown): s is Dtype {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZE, s);
}

function fail(file: string, message: string, tensor?: string): never {
  throw new LoraxsError(message, tensor === undefined ? { file } : { file, detail: tensor });
}

/** Number of elements of a shape (1 for a scalar). */
export function numElements(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Reads exactly `length` bytes at `position`, in chunks below the 2 GiB limit of one readSync. */
function readExactly(fd: number, buf: Buffer, position: number, length: number): number {
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, done, Math.min(length - done, 1 << 30), position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/**
 * Reads and validates a safetensors header; reads only the first 8 + N bytes of the file, never the data.
 * Checks: header length bounds, JSON object, `__metadata__` of strings, known dtypes, shapes of
 * non-negative integers, `[begin, end]` offsets inside the data section, no overlaps, and
 * product(shape) × dtype size = end − begin.
 */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    fail(file, `cannot open safetensors file: ${(e as Error).message}`);
  }
  try {
    const fileSize = fs.fstatSync(fd).size;
    if (fileSize < 8) fail(file, `not a safetensors file: ${fileSize} bytes, shorter than the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    readExactly(fd, lenBuf, 0, 8);
    const n = lenBuf.readBigUInt64LE(0);
    if (n === 0n) fail(file, 'not a safetensors file: header length is 0');
    if (n > BigInt(MAX_HEADER_BYTES)) {
      fail(file, `not a safetensors file: header length ${n} bytes exceeds the ${MAX_HEADER_BYTES}-byte limit`);
    }
    const headerLength = Number(n);
    if (8 + headerLength > fileSize) {
      fail(file, `truncated safetensors file: header length ${headerLength} bytes, but the file has only ${fileSize - 8} bytes after the length`);
    }
    const headerBuf = Buffer.alloc(headerLength);
    const got = readExactly(fd, headerBuf, 8, headerLength);
    if (got !== headerLength) fail(file, `truncated safetensors file: read ${got} of ${headerLength} header bytes`);
    return parseSafetensorsHeader(file, headerBuf, headerLength, fileSize);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Validates header bytes read elsewhere (a local file above, or a hub header fetched by Range requests),
 * given the whole file's size; `file` is what messages name.
 */
export function parseSafetensorsHeader(file: string, headerBuf: Buffer, headerLength: number, fileSize: number): SafetensorsHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBuf);
  } catch {
    fail(file, 'safetensors header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail(file, `safetensors header is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    fail(file, `safetensors header must be a JSON object, got ${Array.isArray(json) ? 'an array' : json === null ? 'null' : typeof json}`);
  }
  const dataStart = 8 + headerLength;
  const dataLength = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorEntry>();
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (value === null) continue;
      if (typeof value !== 'object' || Array.isArray(value)) fail(file, '__metadata__ must be an object of strings', name);
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(file, `__metadata__ value of '${k}' must be a string, got ${JSON.stringify(v)}`, `__metadata__.${k}`);
        metadata[k] = v;
      }
      continue;
    }
    tensors.set(name, parseEntry(file, name, value, dataLength));
  }
  // Overlaps: sorted by begin, each tensor must start at or after the previous one's end.
  const sorted = [...tensors.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    const cur = sorted[i];
    if (cur.begin < prev.end) {
      fail(file, `tensor '${cur.name}' (bytes ${cur.begin}..${cur.end}) overlaps tensor '${prev.name}' (bytes ${prev.begin}..${prev.end})`, cur.name);
    }
  }
  return { file, headerLength, dataStart, fileSize, tensors, metadata };
}

function parseEntry(file: string, name: string, value: unknown, dataLength: number): TensorEntry {
  const where = `tensor '${name}'`;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(file, `${where}: header entry must be an object with dtype, shape and data_offsets`, name);
  const v = value as Record<string, unknown>;
  if (!isDtype(v.dtype)) {
    fail(file, `${where}: dtype ${JSON.stringify(v.dtype)} is not supported (supported: ${Object.keys(DTYPE_SIZE).join(', ')})`, name);
  }
  const shape = v.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    fail(file, `${where}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`, name);
  }
  const off = v.data_offsets;
  if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && o >= 0) || off[0] > off[1]) {
    fail(file, `${where}: data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(off)}`, name);
  }
  const [begin, end] = off as [number, number];
  const expected = numElements(shape) * DTYPE_SIZE[v.dtype];
  if (end - begin !== expected) {
    fail(file, `${where}: ${v.dtype} shape [${shape.join(', ')}] needs ${expected} bytes, but data_offsets [${begin}, ${end}] span ${end - begin}`, name);
  }
  if (end > dataLength) {
    fail(file, `${where}: data ends at byte ${end} of the data section, but the file has only ${dataLength} data bytes (truncated file or bad data_offsets)`, name);
  }
  return { name, dtype: v.dtype, shape: [...shape], begin, end };
}

function entryOf(header: SafetensorsHeader, name: string): TensorEntry {
  const entry = header.tensors.get(name);
  if (!entry) fail(header.file, `tensor '${name}' is not in this file (it has ${header.tensors.size} tensors)`, name);
  return entry;
}

/** Reads one tensor's raw bytes (little-endian), checking the file has not shrunk since its header was read. */
export function readTensorBytes(header: SafetensorsHeader, name: string): Buffer {
  const entry = entryOf(header, name);
  const length = entry.end - entry.begin;
  const buf = Buffer.alloc(length);
  if (length === 0) return buf;
  const fd = fs.openSync(header.file, 'r');
  try {
    const got = readExactly(fd, buf, header.dataStart + entry.begin, length);
    if (got !== length) fail(header.file, `tensor '${name}': truncated file, read ${got} of ${length} bytes`, name);
  } finally {
    fs.closeSync(fd);
  }
  return buf;
}

/** Reads a floating tensor (F32, F16, BF16, F64) as float32; integer tensors are refused. */
export function readTensorFloat32(header: SafetensorsHeader, name: string): Float32Array {
  const entry = entryOf(header, name);
  if (!FLOAT_DTYPES.includes(entry.dtype)) {
    fail(header.file, `tensor '${name}' has dtype ${entry.dtype}; only floating tensors (${FLOAT_DTYPES.join(', ')}) can be read as float32`, name);
  }
  const bytes = readTensorBytes(header, name);
  return bytesToFloat32(bytes, entry.dtype);
}

/**
 * Raw little-endian bytes of a floating dtype -> float32 values. For F32 bytes at an aligned offset the
 * result shares memory with `bytes` (no copy); otherwise it is a fresh array.
 */
export function bytesToFloat32(bytes: Buffer | Uint8Array, dtype: Dtype): Float32Array {
  let src: Uint8Array = bytes;
  if (bytes.byteOffset % 8 !== 0) {
    // A Buffer may sit at any offset of a shared pool: copy to an aligned one.
    src = new Uint8Array(bytes.byteLength);
    src.set(bytes);
  }
  const n = bytes.byteLength / DTYPE_SIZE[dtype];
  switch (dtype) {
    case 'F32': return new Float32Array(src.buffer, src.byteOffset, n);
    case 'F16': return f16ArrayToFloat32(new Uint16Array(src.buffer, src.byteOffset, n));
    case 'BF16': return bf16ArrayToFloat32(new Uint16Array(src.buffer, src.byteOffset, n));
    case 'F64': return Float32Array.from(new Float64Array(src.buffer, src.byteOffset, n));
    default: throw new Error(`internal error: bytesToFloat32 called with ${dtype}`);
  }
}

/** float32 values -> the element array to write as `dtype` (F16/BF16 rounded to nearest even). */
export function float32ToDtype(data: Float32Array, dtype: 'F32' | 'F16' | 'BF16'): Uint8Array | Float32Array | Uint16Array {
  switch (dtype) {
    case 'F32': return data;
    case 'F16': return float32ArrayToF16(data);
    case 'BF16': return float32ArrayToBf16(data);
  }
}

/** A tensor to write whose bytes are produced only when it is written (see writeSafetensorsStreaming). */
export interface LazyTensorToWrite {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** The raw elements, little-endian; byteLength must be product(shape) × DTYPE_SIZE[dtype]. */
  bytes(): ArrayBufferView;
}

/**
 * The 8-byte length and the header JSON, space-padded so the data section starts at a multiple of 8 (as
 * the reference writer does), for tensors stored contiguously in the given order.
 */
function encodeHeader(tensors: Array<Pick<TensorToWrite, 'name' | 'dtype' | 'shape'>>, metadata?: Record<string, string>): { head: Buffer; dataBytes: number } {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) assert(typeof v === 'string', () => `__metadata__ value of '${k}' must be a string, got ${typeof v}`);
    header.__metadata__ = metadata;
  }
  let offset = 0;
  const seen = new Set<string>();
  for (const t of tensors) {
    assert(t.name !== '__metadata__' && !seen.has(t.name), () => `tensor name '${t.name}' is reserved or repeated`);
    seen.add(t.name);
    assert(isDtype(t.dtype), () => `tensor '${t.name}': unknown dtype ${t.dtype}`);
    assert(t.shape.every((d) => Number.isSafeInteger(d) && d >= 0), () => `tensor '${t.name}': bad shape [${t.shape}]`);
    const size = numElements(t.shape) * DTYPE_SIZE[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  const head = Buffer.alloc(8 + json.length + pad, 0x20);
  head.writeBigUInt64LE(BigInt(json.length + pad), 0);
  json.copy(head, 8);
  return { head, dataBytes: offset };
}

function checkSize(t: Pick<TensorToWrite, 'name' | 'dtype' | 'shape'>, data: ArrayBufferView): Uint8Array {
  const expected = numElements(t.shape) * DTYPE_SIZE[t.dtype];
  assert(data.byteLength === expected, () => `tensor '${t.name}': ${t.dtype} [${t.shape}] needs ${expected} bytes, data has ${data.byteLength}`);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Encodes tensors as a safetensors file in memory: tensors in the given order, contiguous. */
export function encodeSafetensors(tensors: TensorToWrite[], metadata?: Record<string, string>): Buffer {
  const { head, dataBytes } = encodeHeader(tensors, metadata);
  const out = Buffer.allocUnsafe(head.length + dataBytes);
  head.copy(out, 0);
  let pos = head.length;
  for (const t of tensors) {
    out.set(checkSize(t, t.data), pos);
    pos += t.data.byteLength;
  }
  return out;
}

/**
 * Writes a safetensors file tensor by tensor, holding one tensor's bytes at a time (a merged multi-GB
 * checkpoint never sits in memory whole, nor is it copied into one buffer). The file is written in place:
 * callers write into a temporary file or folder and move it into place (folder_swap, atomic_write).
 */
export function writeSafetensorsStreaming(file: string, tensors: LazyTensorToWrite[], metadata?: Record<string, string>): void {
  const { head } = encodeHeader(tensors, metadata);
  const fd = fs.openSync(file, 'w');
  try {
    const writeAll = (bytes: Uint8Array) => {
      for (let done = 0; done < bytes.byteLength;) done += fs.writeSync(fd, bytes, done, bytes.byteLength - done);
    };
    writeAll(head);
    for (const t of tensors) writeAll(checkSize(t, t.bytes()));
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes a safetensors file atomically (see encodeSafetensors for the layout). */
export function writeSafetensors(file: string, tensors: TensorToWrite[], metadata?: Record<string, string>): void {
  writeFileAtomic(file, encodeSafetensors(tensors, metadata));
}

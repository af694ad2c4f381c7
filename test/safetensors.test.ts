import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { LoraxsError } from '../sidecar/errors';
import { Rng } from '../sidecar/rng';
import {
  bf16ArrayToFloat32, bf16BitsToFloat, bitsToFloat32, f16ArrayToFloat32, f16BitsToFloat, float32ArrayToBf16,
  float32ArrayToF16, float32Bits, floatToBf16Bits, floatToF16Bits,
} from '../sidecar/io/float16';
import {
  encodeSafetensors, float32ToDtype, readSafetensorsHeader, readTensorBytes, readTensorFloat32, writeSafetensors,
  type Dtype, type TensorToWrite,
} from '../sidecar/io/safetensors';
import { writeFileAtomic, writeJsonAtomic } from '../sidecar/io/atomic_write';
import { repoRoot, tempDir } from './paths';

const dir = tempDir('loraxs-safetensors-');

// ---------------------------------------------------------------------------------------------------------
// float16.ts against hand-computed bit patterns

test('F16 bits decode to the values IEEE 754 binary16 defines', () => {
  const cases: [number, number][] = [
    [0x3c00, 1], [0xc000, -2], [0x7bff, 65504], [0x0400, 2 ** -14], [0x0001, 2 ** -24], [0x03ff, 1023 * 2 ** -24],
    [0x3555, 0.333251953125], [0x7c00, Infinity], [0xfc00, -Infinity], [0x0000, 0], [0x3800, 0.5], [0x8001, -(2 ** -24)],
  ];
  for (const [bits, value] of cases) assert.equal(f16BitsToFloat(bits), value, `0x${bits.toString(16)}`);
  assert.ok(Object.is(f16BitsToFloat(0x8000), -0), '0x8000 is -0');
  assert.ok(Number.isNaN(f16BitsToFloat(0x7e00)) && Number.isNaN(f16BitsToFloat(0x7c01)) && Number.isNaN(f16BitsToFloat(0xfe00)));
});

test('F32 -> F16 rounds to nearest even, with overflow, subnormals and NaN right', () => {
  const cases: [number, number][] = [
    [1, 0x3c00], [-2, 0xc000], [1 / 3, 0x3555], [65504, 0x7bff], [65519, 0x7bff],
    [65520, 0x7c00], // halfway between 65504 (odd mantissa) and 65536: even is Inf
    [1e10, 0x7c00], [-1e10, 0xfc00], [Infinity, 0x7c00], [-Infinity, 0xfc00],
    [1 + 2 ** -11, 0x3c00], // tie: stays on even 0x3c00
    [1 + 3 * 2 ** -11, 0x3c02], // tie between 0x3c01 and 0x3c02: even
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie
    [2 ** -24, 0x0001], [2 ** -25, 0x0000], // exactly half the smallest subnormal: even (0)
    [1.5 * 2 ** -25, 0x0001], [3 * 2 ** -25, 0x0002], [5 * 2 ** -25, 0x0002],
    [1023.5 * 2 ** -24, 0x0400], // subnormal rounding carries into the smallest normal
    [2 ** -14, 0x0400], [1e-10, 0x0000], [-1e-10, 0x8000], [2 ** -149, 0x0000],
  ];
  for (const [x, bits] of cases) assert.equal(floatToF16Bits(x), bits, `${x} -> 0x${floatToF16Bits(x).toString(16)}, expected 0x${bits.toString(16)}`);
  assert.equal(floatToF16Bits(-0), 0x8000);
  const nan = floatToF16Bits(NaN);
  assert.ok((nan & 0x7c00) === 0x7c00 && (nan & 0x3ff) !== 0, `NaN -> 0x${nan.toString(16)} must be a NaN`);
});

test('F16 -> F32 -> F16 is the identity on all 65,536 bit patterns (NaNs stay NaN)', () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const wide = f16ArrayToFloat32(all);
  const back = float32ArrayToF16(wide);
  for (let h = 0; h < 65536; h++) {
    const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    if (isNaN) assert.ok(Number.isNaN(wide[h]) && (back[h] & 0x7c00) === 0x7c00 && (back[h] & 0x3ff) !== 0);
    else assert.equal(back[h], h, `0x${h.toString(16)}`);
    if (!isNaN) assert.ok(Object.is(wide[h], f16BitsToFloat(h)));
  }
});

/** Independent reference: the nearest finite F16 by search over all positive values, ties to even bits. */
function nearestF16Reference(x: number, positives: Float64Array): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  const maxFinite = 65504;
  if (a >= maxFinite + 16) return sign | 0x7c00; // at or beyond the halfway point to 2^16
  let lo = 0;
  let hi = 0x7bff;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (positives[mid] <= a) lo = mid; else hi = mid;
  }
  const dLo = a - positives[lo];
  const dHi = positives[hi] - a;
  const pick = dLo < dHi ? lo : dHi < dLo ? hi : (lo % 2 === 0 ? lo : hi);
  return sign | pick;
}

test('F32 -> F16 agrees with a brute-force nearest-even search on 20,000 float32 values', () => {
  const positives = new Float64Array(0x7c00);
  for (let h = 0; h < 0x7c00; h++) positives[h] = f16BitsToFloat(h);
  const rng = new Rng(1);
  const xs = new Float32Array(20000);
  for (let i = 0; i < xs.length; i++) {
    // Exponents from 2^-28 to 2^17 cover zero-rounding, subnormals, normals and overflow; add exact ties.
    const e = Math.floor(rng.uniform() * 45) - 28;
    let v = (1 + rng.uniform()) * 2 ** e;
    if (i % 5 === 0) v = f16BitsToFloat(Math.floor(rng.uniform() * 0x7bff)) + 0.5 * (2 ** (e - 10));
    xs[i] = rng.uniform() < 0.5 ? -v : v;
  }
  const got = float32ArrayToF16(xs);
  for (let i = 0; i < xs.length; i++) {
    assert.equal(got[i], nearestF16Reference(xs[i], positives), `x=${xs[i]} got 0x${got[i].toString(16)}`);
  }
});

test('BF16 conversions: hand-computed bit patterns and round-to-nearest-even', () => {
  assert.equal(bf16BitsToFloat(0x3f80), 1);
  assert.equal(bf16BitsToFloat(0x4049), 3.140625);
  assert.equal(bf16BitsToFloat(0xc000), -2);
  assert.equal(bf16BitsToFloat(0x0001), 2 ** -133); // float32 subnormal 0x00010000
  assert.equal(bf16BitsToFloat(0x7f80), Infinity);
  assert.ok(Number.isNaN(bf16BitsToFloat(0x7fc0)));
  const cases: [number, number][] = [
    [1, 0x3f80], [Math.PI, 0x4049], [1 + 2 ** -8, 0x3f80], [1 + 3 * 2 ** -8, 0x3f82], [1 + 2 ** -8 + 2 ** -20, 0x3f81],
    [bitsToFloat32(0x7f7fffff), 0x7f80], [bitsToFloat32(0x7f7f7fff), 0x7f7f], [-Infinity, 0xff80], [2 ** -133, 0x0001],
  ];
  for (const [x, bits] of cases) assert.equal(floatToBf16Bits(x), bits, `${x} -> 0x${floatToBf16Bits(x).toString(16)}`);
  assert.equal(floatToBf16Bits(-0), 0x8000);
  const nan = floatToBf16Bits(bitsToFloat32(0x7f800001)); // signalling NaN with a low payload must not become Inf
  assert.ok((nan & 0x7f80) === 0x7f80 && (nan & 0x7f) !== 0);
  // Array versions agree with the scalar ones, and widening is exact (the top half of the float32).
  const rng = new Rng(2);
  const xs = rng.normalArray(1000, 100);
  const bits = float32ArrayToBf16(xs);
  const wide = bf16ArrayToFloat32(bits);
  for (let i = 0; i < xs.length; i++) {
    assert.equal(bits[i], floatToBf16Bits(xs[i]));
    assert.equal(float32Bits(wide[i]), (bits[i] << 16) >>> 0);
    assert.ok(Math.abs(wide[i] - xs[i]) <= Math.abs(xs[i]) * 2 ** -8, 'bf16 relative error at most 2^-8');
  }
});

// ---------------------------------------------------------------------------------------------------------
// safetensors round trips

function sampleTensors(): TensorToWrite[] {
  const rng = new Rng(3);
  const f32 = rng.normalArray(12);
  const f64 = Float64Array.from(rng.normalArray(5), (v) => v / 3);
  return [
    { name: 'w.f32', dtype: 'F32', shape: [3, 4], data: f32 },
    { name: 'w.f16', dtype: 'F16', shape: [2, 3], data: float32ToDtype(rng.normalArray(6), 'F16') },
    { name: 'w.bf16', dtype: 'BF16', shape: [6], data: float32ToDtype(rng.normalArray(6), 'BF16') },
    { name: 'w.f64', dtype: 'F64', shape: [5], data: f64 },
    { name: 'i.i64', dtype: 'I64', shape: [1, 3], data: BigInt64Array.from([-(2n ** 40n), 0n, 2n ** 62n]) },
    { name: 'i.i32', dtype: 'I32', shape: [2], data: Int32Array.from([-7, 2 ** 31 - 1]) },
    { name: 'i.i16', dtype: 'I16', shape: [3], data: Int16Array.from([-32768, 1, 32767]) },
    { name: 'i.i8', dtype: 'I8', shape: [2], data: Int8Array.from([-128, 127]) },
    { name: 'i.u8', dtype: 'U8', shape: [3], data: Uint8Array.from([0, 7, 255]) },
    { name: 'i.bool', dtype: 'BOOL', shape: [2], data: Uint8Array.from([1, 0]) },
    { name: 'scalar', dtype: 'F32', shape: [], data: Float32Array.from([2.5]) },
    { name: 'empty', dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
    // A view into the middle of a larger buffer: only its own bytes may be written.
    { name: 'view', dtype: 'F32', shape: [2], data: new Float32Array(Float32Array.from([9, 1, 2, 9]).buffer, 4, 2) },
  ];
}

function bytesOf(v: ArrayBufferView): Buffer {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

test('write then read: every dtype round-trips bit-exactly, with metadata, padding and offsets', () => {
  const file = path.join(dir, 'all.safetensors');
  const tensors = sampleTensors();
  writeSafetensors(file, tensors, { format: 'pt', note: 'héllo' });
  const header = readSafetensorsHeader(file);
  assert.deepEqual(header.metadata, { format: 'pt', note: 'héllo' });
  assert.equal(header.dataStart % 8, 0, 'data section starts at a multiple of 8');
  assert.equal(header.dataStart, 8 + header.headerLength);
  assert.deepEqual([...header.tensors.keys()], tensors.map((t) => t.name), 'tensors in the given order');
  let offset = 0;
  for (const t of tensors) {
    const e = header.tensors.get(t.name)!;
    assert.deepEqual({ dtype: e.dtype, shape: e.shape, begin: e.begin }, { dtype: t.dtype, shape: t.shape, begin: offset });
    offset = e.end;
    assert.ok(readTensorBytes(header, t.name).equals(bytesOf(t.data)), `${t.name} bytes`);
  }
  assert.equal(header.fileSize, header.dataStart + offset, 'contiguous, nothing after the last tensor');
  const raw = fs.readFileSync(file);
  assert.match(raw.subarray(8, 8 + header.headerLength).toString('utf8'), /^\{.*\} *$/, 'header JSON padded with spaces');

  // Float reads: exact widening of what was stored.
  assert.deepEqual(readTensorFloat32(header, 'w.f32'), tensors[0].data);
  assert.deepEqual(readTensorFloat32(header, 'w.f16'), f16ArrayToFloat32(tensors[1].data as Uint16Array));
  assert.deepEqual(readTensorFloat32(header, 'w.bf16'), bf16ArrayToFloat32(tensors[2].data as Uint16Array));
  assert.deepEqual(readTensorFloat32(header, 'w.f64'), Float32Array.from(tensors[3].data as Float64Array));
  assert.deepEqual(readTensorFloat32(header, 'scalar'), Float32Array.from([2.5]));
  assert.deepEqual(readTensorFloat32(header, 'view'), Float32Array.from([1, 2]));
  assert.equal(readTensorFloat32(header, 'empty').length, 0);
});

test('readTensorFloat32 refuses integer tensors and unknown names with a LoraxsError naming file and tensor', () => {
  const file = path.join(dir, 'ints.safetensors');
  writeSafetensors(file, sampleTensors());
  const header = readSafetensorsHeader(file);
  for (const name of ['i.i64', 'i.bool', 'nope']) {
    assert.throws(() => readTensorFloat32(header, name), (e: unknown) =>
      e instanceof LoraxsError && e.place?.file === file && e.place.detail === name && e.message.includes(`'${name}'`));
  }
});

test('the header is read without reading tensor data', () => {
  // A header that promises 512 MiB of data in a file whose data section is sparse: reading the header must
  // be instant and must not allocate the data. (A sparse file keeps the disk untouched.)
  const file = path.join(dir, 'big.safetensors');
  const n = 128 * 1024 * 1024; // 128 Mi float32 = 512 MiB
  const json = Buffer.from(JSON.stringify({ big: { dtype: 'F32', shape: [n], data_offsets: [0, 4 * n] } }));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, json]));
  fs.truncateSync(file, 8 + json.length + 4 * n);
  const before = process.memoryUsage().rss;
  const t0 = Date.now();
  const header = readSafetensorsHeader(file);
  assert.ok(Date.now() - t0 < 500, 'header read is fast');
  assert.ok(process.memoryUsage().rss - before < 100 * 1024 * 1024, 'no data was read into memory');
  assert.deepEqual(header.tensors.get('big')!.shape, [n]);
  fs.rmSync(file);
});

// ---------------------------------------------------------------------------------------------------------
// Strict validation

/** A file with this header object (or raw header text) and `dataBytes` bytes of data. */
function makeFile(name: string, header: unknown, dataBytes: number, headerLengthOverride?: bigint): string {
  const file = path.join(dir, name);
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLengthOverride ?? BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, json, Buffer.alloc(dataBytes)]));
  return file;
}

function expectError(file: string, pattern: RegExp, tensor?: string): void {
  assert.throws(() => readSafetensorsHeader(file), (e: unknown) => {
    assert.ok(e instanceof LoraxsError, `expected a LoraxsError, got ${String(e)}`);
    assert.equal(e.place?.file, file);
    assert.match(e.message, pattern);
    if (tensor !== undefined) {
      assert.equal(e.place?.detail, tensor);
      assert.ok(e.message.includes(`'${tensor}'`), `message names tensor '${tensor}': ${e.message}`);
    }
    return true;
  });
}

const ok = { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] };

test('corrupted files: each problem is a LoraxsError naming the file (and the tensor)', () => {
  const short = path.join(dir, 'short.safetensors');
  fs.writeFileSync(short, Buffer.from([1, 2, 3, 4, 5]));
  expectError(short, /shorter than the 8-byte header length/);
  expectError(makeFile('zero.safetensors', '', 0), /header length is 0/);
  expectError(makeFile('huge.safetensors', { a: ok }, 16, 200_000_000n), /exceeds the 100000000-byte limit/);
  expectError(makeFile('beyond.safetensors', { a: ok }, 0, 5000n), /truncated safetensors file: header length 5000/);
  expectError(makeFile('badjson.safetensors', '{"a": {"dtype": "F32",', 16), /not valid JSON/);
  expectError(makeFile('array.safetensors', '[1, 2]', 0), /must be a JSON object, got an array/);
  expectError(makeFile('meta.safetensors', { __metadata__: { format: 'pt', step: 3 }, a: ok }, 16), /__metadata__ value of 'step' must be a string/);
  expectError(makeFile('dtype.safetensors', { a: ok, b: { dtype: 'F8_E4M3', shape: [2], data_offsets: [16, 18] } }, 18), /dtype "F8_E4M3" is not supported/, 'b');
  expectError(makeFile('shape.safetensors', { w: { dtype: 'F32', shape: [-1, 2], data_offsets: [0, 8] } }, 8), /shape must be an array of non-negative integers/, 'w');
  expectError(makeFile('shape2.safetensors', { w: { dtype: 'F32', shape: '4', data_offsets: [0, 16] } }, 16), /shape must be an array/, 'w');
  expectError(makeFile('shape3.safetensors', { w: { dtype: 'F32', shape: [1.5], data_offsets: [0, 6] } }, 16), /shape must be an array/, 'w');
  expectError(makeFile('offsets.safetensors', { w: { dtype: 'F32', shape: [1], data_offsets: [8, 4] } }, 16), /data_offsets must be \[begin, end\]/, 'w');
  expectError(makeFile('offsets2.safetensors', { w: { dtype: 'F32', shape: [1], data_offsets: [0] } }, 16), /data_offsets must be/, 'w');
  expectError(makeFile('entry.safetensors', { w: [1] }, 16), /header entry must be an object/, 'w');
  expectError(makeFile('size.safetensors', { w: { dtype: 'F16', shape: [2, 3], data_offsets: [0, 16] } }, 16), /F16 shape \[2, 3\] needs 12 bytes, but data_offsets \[0, 16\] span 16/, 'w');
  expectError(makeFile('beyond-data.safetensors', { a: ok, w: { dtype: 'F32', shape: [4], data_offsets: [16, 32] } }, 20), /ends at byte 32 of the data section, but the file has only 20 data bytes/, 'w');
  expectError(makeFile('overlap.safetensors', { a: ok, w: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, 16), /overlaps tensor 'a'/, 'w');
});

test('a truncated file (cut inside the data) names the last tensor', () => {
  const full = encodeSafetensors(sampleTensors());
  const file = path.join(dir, 'truncated.safetensors');
  fs.writeFileSync(file, full.subarray(0, full.length - 5));
  expectError(file, /truncated file or bad data_offsets/, 'view');
  // Shrunk after the header was read: readTensorBytes notices the short read.
  fs.writeFileSync(file, full);
  const header = readSafetensorsHeader(file);
  fs.truncateSync(file, full.length - 5);
  assert.throws(() => readTensorBytes(header, 'view'), (e: unknown) => e instanceof LoraxsError && /truncated file, read 3 of 8 bytes/.test(e.message));
});

test('zero-length tensors may share an offset; gaps between tensors are allowed', () => {
  const file = makeFile('zeros.safetensors', {
    e1: { dtype: 'F32', shape: [0], data_offsets: [0, 0] }, e2: { dtype: 'I8', shape: [3, 0], data_offsets: [0, 0] },
    a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [12, 16] },
  }, 16);
  assert.equal(readSafetensorsHeader(file).tensors.size, 4);
});

// ---------------------------------------------------------------------------------------------------------
// Atomic writes

test('writeFileAtomic replaces the file whole and leaves no temporary file, even on failure', () => {
  const file = path.join(dir, 'atomic.json');
  writeJsonAtomic(file, { a: 1 });
  assert.equal(fs.readFileSync(file, 'utf8'), '{\n  "a": 1\n}\n');
  writeFileAtomic(file, Buffer.from('second'));
  assert.equal(fs.readFileSync(file, 'utf8'), 'second');
  // Renaming onto a folder fails: the old content of the target stays and the tmp file is removed.
  const target = path.join(dir, 'a-folder');
  fs.mkdirSync(target);
  fs.writeFileSync(path.join(target, 'keep'), 'x');
  assert.throws(() => writeFileAtomic(target, 'data'));
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f.includes('.tmp-')), []);
  assert.throws(() => writeFileAtomic(path.join(dir, 'missing-folder', 'f'), 'data'), /ENOENT/);
});

// ---------------------------------------------------------------------------------------------------------
// Cross-check with the reference implementation (Python safetensors + numpy)

const script = path.join(repoRoot, 'test', 'reference', 'safetensors_crosscheck.py');
const python = spawnSync('python3', ['-c', 'import safetensors, numpy'], { encoding: 'utf8' });
const noPython = python.status === 0 ? false
  : 'skipped: python3 with safetensors and numpy is not available (pip install safetensors numpy)';

function runPython(args: string[]): string {
  const r = spawnSync('python3', [script, ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  assert.equal(r.status, 0, `python failed: ${r.stderr}`);
  return r.stdout;
}

interface Described { dtype: Dtype; shape: number[]; values: number[] }

function valuesOf(header: ReturnType<typeof readSafetensorsHeader>, name: string): number[] {
  const e = header.tensors.get(name)!;
  if (['F32', 'F16', 'BF16'].includes(e.dtype)) return [...readTensorFloat32(header, name)];
  const b = readTensorBytes(header, name);
  const u = new Uint8Array(b);
  switch (e.dtype) {
    case 'F64': return [...new Float64Array(u.buffer)];
    case 'I64': return [...new BigInt64Array(u.buffer)].map(Number);
    case 'I32': return [...new Int32Array(u.buffer)];
    case 'I16': return [...new Int16Array(u.buffer)];
    case 'I8': return [...new Int8Array(u.buffer)];
    default: return [...u];
  }
}

test('reads files written by Python safetensors, values equal', { skip: noPython }, () => {
  const file = path.join(dir, 'from-python.safetensors');
  const expected = JSON.parse(runPython(['write', file])) as Record<string, Described | Record<string, string>>;
  const header = readSafetensorsHeader(file);
  assert.deepEqual(header.metadata, expected.__metadata__);
  for (const [name, d] of Object.entries(expected)) {
    if (name === '__metadata__') continue;
    const desc = d as Described;
    const e = header.tensors.get(name)!;
    assert.deepEqual({ dtype: e.dtype, shape: e.shape }, { dtype: desc.dtype, shape: desc.shape }, name);
    const got = valuesOf(header, name);
    // F64 values compared exactly; F32/F16 are float32 values printed as doubles: exact too.
    assert.deepEqual(got, desc.values, name);
  }
});

test('Python safetensors reads our files, values equal', { skip: noPython }, () => {
  const file = path.join(dir, 'to-python.safetensors');
  const tensors = sampleTensors().filter((t) => t.dtype !== 'BF16' && t.dtype !== 'I64'); // numpy has no bf16; I64 beyond 2^53 in JSON
  tensors.push({ name: 'i.i64', dtype: 'I64', shape: [2], data: BigInt64Array.from([-(2n ** 40n), 12345n]) });
  writeSafetensors(file, tensors, { format: 'pt' });
  const got = JSON.parse(runPython(['read', file])) as Record<string, Described | Record<string, string>>;
  assert.deepEqual(got.__metadata__, { format: 'pt' });
  const header = readSafetensorsHeader(file);
  for (const t of tensors) {
    const desc = got[t.name] as Described;
    assert.deepEqual({ dtype: desc.dtype, shape: desc.shape }, { dtype: t.dtype, shape: t.shape }, t.name);
    assert.deepEqual(desc.values, valuesOf(header, t.name), t.name);
  }
});

test('F32 -> F16 rounding equals numpy astype(float16) on 50,000 values', { skip: noPython }, () => {
  const rng = new Rng(4);
  const xs = new Float32Array(50000);
  for (let i = 0; i < xs.length; i++) xs[i] = (rng.uniform() < 0.5 ? -1 : 1) * (1 + rng.uniform()) * 2 ** (Math.floor(rng.uniform() * 46) - 28);
  xs.set([NaN, Infinity, -Infinity, 65520, 65519, 2 ** -25, 3 * 2 ** -25, -0], 0);
  const inFile = path.join(dir, 'f32.bin');
  const outFile = path.join(dir, 'f16.bin');
  fs.writeFileSync(inFile, bytesOf(xs));
  runPython(['f16', inFile, outFile]);
  const ref = new Uint16Array(new Uint8Array(fs.readFileSync(outFile)).buffer);
  const ours = float32ArrayToF16(xs);
  for (let i = 0; i < xs.length; i++) {
    if (Number.isNaN(xs[i])) assert.ok((ours[i] & 0x7c00) === 0x7c00 && (ours[i] & 0x3ff) !== 0);
    else assert.equal(ours[i], ref[i], `x=${xs[i]}: ours 0x${ours[i].toString(16)}, numpy 0x${ref[i].toString(16)}`);
  }
});

/**
 * Exact conversions between IEEE half precision (F16), bfloat16 (BF16) and float32, on raw bit patterns.
 * Widening (F16/BF16 -> F32) is exact. Narrowing (F32 -> F16/BF16) rounds to nearest, ties to even, as
 * PyTorch's `.half()` / `.bfloat16()` do: values beyond the range become ±Inf, tiny values become
 * subnormals or ±0, NaN stays NaN (quiet, with its sign and top payload bits).
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The bits of `x` rounded to float32 (x is first rounded to float32, as a Float32Array store does). */
export function float32Bits(x: number): number {
  f32[0] = x;
  return u32[0];
}

/** The float32 value with these bits. */
export function bitsToFloat32(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0];
}

/** F16 bits (0..65535) -> float32 bits, exactly. */
function f16ToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0; // Inf, NaN (payload kept)
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0; // normal: rebias 15 -> 127
  if (mant === 0) return sign >>> 0; // ±0
  // Subnormal: value = mant · 2^-24; normalise so the leading 1 becomes the implicit bit.
  let e = 113; // biased exponent of 2^-14
  let m = mant;
  while ((m & 0x400) === 0) {
    m <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

/** F16 bits -> the number they encode (exact). */
export function f16BitsToFloat(h: number): number {
  return bitsToFloat32(f16ToF32Bits(h & 0xffff));
}

/** float32 bits -> F16 bits, round to nearest even. */
function f32BitsToF16(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) {
    if (mant === 0) return sign | 0x7c00; // ±Inf
    return sign | 0x7e00 | (mant >>> 13); // NaN: quiet bit set so it cannot become Inf
  }
  const halfExp = exp - 112; // 127 - 15
  if (halfExp >= 0x1f) return sign | 0x7c00; // overflow before rounding
  if (halfExp <= 0) {
    // Result is subnormal or zero: value = m · 2^(exp-150), half subnormal unit 2^-24.
    if (exp < 102) return sign; // below half the smallest subnormal (2^-25): rounds to ±0
    const m = mant | 0x800000;
    const shift = 126 - exp; // 14..24
    let q = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (q & 1) === 1)) q++; // may carry into the smallest normal: correct
    return sign | q;
  }
  let q = (halfExp << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (q & 1) === 1)) q++; // a carry into the exponent is correct (up to Inf)
  return sign | q;
}

/** A number (rounded to float32 first) -> F16 bits, round to nearest even. */
export function floatToF16Bits(x: number): number {
  return f32BitsToF16(float32Bits(x));
}

/** BF16 bits -> the number they encode (exact: BF16 is the top half of a float32). */
export function bf16BitsToFloat(b: number): number {
  return bitsToFloat32((b & 0xffff) << 16);
}

/** float32 bits -> BF16 bits, round to nearest even. */
function f32BitsToBf16(u: number): number {
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff; // NaN: keep it quiet
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff; // overflow rounds to Inf, as it should
}

/** A number (rounded to float32 first) -> BF16 bits, round to nearest even. */
export function floatToBf16Bits(x: number): number {
  return f32BitsToBf16(float32Bits(x));
}

let f16Table: Float32Array | undefined;

/** F16 array (raw bits) -> Float32Array, exactly. Uses a 65,536-entry table built once. */
export function f16ArrayToFloat32(src: Uint16Array): Float32Array {
  if (!f16Table) {
    const bits = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) bits[h] = f16ToF32Bits(h);
    f16Table = new Float32Array(bits.buffer);
  }
  const table = f16Table;
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]];
  return out;
}

/** BF16 array (raw bits) -> Float32Array, exactly. */
export function bf16ArrayToFloat32(src: Uint16Array): Float32Array {
  const bits = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  return new Float32Array(bits.buffer);
}

/** Float32Array -> F16 bits, round to nearest even. */
export function float32ArrayToF16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32BitsToF16(bits[i]);
  return out;
}

/** Float32Array -> BF16 bits, round to nearest even. */
export function float32ArrayToBf16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32BitsToBf16(bits[i]);
  return out;
}

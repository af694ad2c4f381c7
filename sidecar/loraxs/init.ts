/**
 * The frozen LoRA-XS factors of one target W (out × in) and the initial R, for each initialisation of the
 * paper's ablations (appendices F–H), with the semantics of the authors' code (utils/initialization_utils.py):
 *
 *   svd            A = Σ_r V_rᵀ (r × in), B = U_r (out × r)      top r triplets of W (default)
 *   svd-no-sigma   A = V_rᵀ,              B = U_r                 appendix H's variant without Σ
 *   svd-bottom     A = Σ V_rᵀ, B = U_r of the r SMALLEST triplets (exact SVD; kept in descending order)
 *   random         A ~ U(−1/√r, 1/√r), B ~ U(−1/√out, 1/√out)
 *   svd-of-random  top r triplets, with Σ, of a random M (out × in) with entries U(−1/√out, 1/√out)
 *
 * `random` follows the authors exactly: they draw kaiming_uniform_(a=√5) (bound = 1/√fan_in, fan_in =
 * the tensor's second dimension) on the encoder matrix of shape (in × r) and the decoder of shape (r ×
 * out), i.e. on Aᵀ and Bᵀ; hence fan_in = r for A and fan_in = out for B. Likewise their random matrix for
 * `svd-of-random` has W's transposed shape (in × out), so its bound is 1/√out.
 *
 * ΔW = (α/r) · B R A, with R (r × r) ~ N(0, init_std²) (the authors' `lora_latent_mapping`, std 1e-5).
 * Every random draw comes from an Rng derived from (run seed, module name, purpose), so a module's factors
 * do not depend on which other modules are adapted or in what order.
 */
import { createHash } from 'node:crypto';
import * as tf from '../backend/tf';
import { Rng } from '../rng';
import type { InitKind, SvdConfig } from '../config/types';
import { exactSvd } from './exact_svd';
import { randomizedSvd, truncateExact, type TruncatedSvd } from './svd';

/** The frozen factors of one adapted module. */
export interface Factors {
  rank: number;
  outFeatures: number;
  inFeatures: number;
  /** (rank, in) row-major: the input-side factor (Σ_r V_rᵀ for `svd`) */
  A: Float32Array;
  /** (out, rank) row-major: the output-side factor (U_r) */
  B: Float32Array;
  /** (rank) the singular values of the decomposed matrix (W, or the random M); empty for `random` */
  sigma: Float32Array;
}

export const INIT_KINDS: readonly InitKind[] = ['svd', 'svd-no-sigma', 'svd-bottom', 'random', 'svd-of-random'];

/**
 * An Rng for one module and one purpose, derived from the run seed: the first 16 bytes of
 * sha256(`loraxs\0<seed>\0<purpose>\0<module name>`) as xoshiro128** state.
 */
export function moduleRng(seed: number, moduleName: string, purpose: 'factors' | 'R'): Rng {
  const digest = createHash('sha256').update(`loraxs\0${seed}\0${purpose}\0${moduleName}`).digest();
  const state: [number, number, number, number] = [digest.readUInt32LE(0), digest.readUInt32LE(4), digest.readUInt32LE(8), digest.readUInt32LE(12)];
  if (state.every((w) => w === 0)) state[0] = 1; // the all-zero state is xoshiro's only fixed point
  return new Rng(state);
}

/**
 * Draws a (rows × cols) matrix as torch.nn.init.kaiming_uniform_(w, a=√5) does for a tensor whose second
 * dimension is `fanIn`: gain √(2 / (1 + 5)), bound = gain · √(3 / fan_in) = 1/√fan_in, U(−bound, bound).
 * @returns (rows, cols) row-major
 */
export function kaimingUniform(rows: number, cols: number, fanIn: number, rng: Rng): Float32Array {
  const bound = 1 / Math.sqrt(fanIn);
  return rng.uniformArray(rows * cols, -bound, bound);
}

/** R (r × r) ~ N(0, std²), row-major; std 0 gives zeros. */
export function initR(rank: number, std: number, rng: Rng): Float32Array {
  if (std === 0) return new Float32Array(rank * rank);
  return rng.normalArray(rank * rank, std);
}

/**
 * Factors for one target.
 * @param W (out, in) the pretrained weight
 * @param rng the module's `factors` Rng (moduleRng(seed, name, 'factors'))
 */
export function computeFactors(W: tf.Tensor2D, rank: number, init: InitKind, svd: SvdConfig, rng: Rng): Factors {
  const [out, inF] = W.shape;
  const base = { rank, outFeatures: out, inFeatures: inF };
  switch (init) {
    case 'svd':
    case 'svd-no-sigma': {
      const t = topTriplets(W, rank, svd, rng);
      return { ...base, ...fromTriplets(t, init === 'svd') };
    }
    case 'svd-bottom': {
      const t = truncateExact(exactSvd(W.dataSync(), out, inF), rank, true);
      return { ...base, ...fromTriplets(t, true) };
    }
    case 'random': {
      const A = kaimingUniform(rank, inF, rank, rng);
      const B = kaimingUniform(out, rank, out, rng);
      return { ...base, A, B, sigma: new Float32Array(0) };
    }
    case 'svd-of-random': {
      const M = tf.tensor2d(kaimingUniform(out, inF, out, rng), [out, inF]);
      try {
        return { ...base, ...fromTriplets(topTriplets(M, rank, svd, rng), true) };
      } finally {
        M.dispose();
      }
    }
  }
}

function topTriplets(W: tf.Tensor2D, rank: number, svd: SvdConfig, rng: Rng): TruncatedSvd {
  const [m, n] = W.shape;
  if (svd.method === 'exact') return truncateExact(exactSvd(W.dataSync(), m, n), rank);
  return randomizedSvd(W, rank, { oversamples: svd.oversamples, powerIters: svd.powerIters }, rng);
}

/** A = (Σ) Vᵀ, B = U from a truncated SVD. */
function fromTriplets(t: TruncatedSvd, withSigma: boolean): { A: Float32Array; B: Float32Array; sigma: Float32Array } {
  const A = Float32Array.from(t.Vt);
  if (withSigma) {
    for (let i = 0; i < t.rank; i++) {
      const s = t.S[i];
      for (let j = 0; j < t.n; j++) A[i * t.n + j] *= s;
    }
  }
  return { A, B: t.U, sigma: t.S };
}

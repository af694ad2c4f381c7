/**
 * The frozen factors a server holds, once per checksum (loraxs_config.json's `factors_sha256`): every
 * adapter of one base model, rank, targets, init and SVD settings (and factor seed) shares one FactorSet,
 * whose A (r, in) and B (out, r) live on the backend while at least one resident adapter uses them.
 */
import * as tf from '../backend/tf';
import type { Factors } from '../loraxs/init';

/** One module's shared factors on the backend. */
export interface SharedModuleFactors {
  rank: number;
  /** (r, in) */
  A: tf.Tensor2D;
  /** (out, r) */
  B: tf.Tensor2D;
}

export interface FactorSet {
  checksum: string;
  modules: Map<string, SharedModuleFactors>;
  /** Bytes of A and B on the backend (float32). */
  bytes: number;
  /** Resident adapters using this set. */
  users: number;
}

export class FactorStore {
  private readonly sets = new Map<string, FactorSet>();

  has(checksum: string): boolean {
    return this.sets.has(checksum);
  }

  get(checksum: string): FactorSet | undefined {
    return this.sets.get(checksum);
  }

  /** The set for `checksum`, uploaded from `factors()` when no resident adapter holds it yet; counts a user. */
  acquire(checksum: string, factors: () => Map<string, Factors>): FactorSet {
    let set = this.sets.get(checksum);
    if (!set) {
      const modules = new Map<string, SharedModuleFactors>();
      let bytes = 0;
      for (const [name, f] of factors()) {
        modules.set(name, { rank: f.rank, A: tf.tensor2d(f.A, [f.rank, f.inFeatures]), B: tf.tensor2d(f.B, [f.outFeatures, f.rank]) });
        bytes += 4 * (f.A.length + f.B.length);
      }
      set = { checksum, modules, bytes, users: 0 };
      this.sets.set(checksum, set);
    }
    set.users++;
    return set;
  }

  /** Drops a user; the set's tensors are freed when none is left. */
  release(checksum: string): void {
    const set = this.sets.get(checksum);
    if (!set) return;
    set.users--;
    if (set.users <= 0) {
      for (const m of set.modules.values()) {
        m.A.dispose();
        m.B.dispose();
      }
      this.sets.delete(checksum);
    }
  }

  get count(): number {
    return this.sets.size;
  }

  get bytes(): number {
    let b = 0;
    for (const s of this.sets.values()) b += s.bytes;
    return b;
  }

  dispose(): void {
    for (const checksum of [...this.sets.keys()]) {
      const set = this.sets.get(checksum)!;
      set.users = 0;
      this.release(checksum);
    }
  }
}

/**
 * The adapters a server can serve: the folders under --adapters, each loaded on first use (its R scaled by
 * α/r, and its head) and evicted least-recently-used when the resident adapters and their factor sets
 * exceed the memory budget. Adapters in use by a running request are pinned and never evicted. Factors are
 * held once per checksum (factor_store.ts). Refused with a one-line error: a name that is not a folder
 * directly under --adapters, an adapter of another base model, factors that cannot be matched, a damaged
 * file.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../backend/tf';
import { LoraxsError } from '../errors';
import { CONFIG_FILE, loadAdapter, labelNamesOf, type LoraxsAdapterConfig } from '../loraxs/adapter_files';
import { adapterFactors, checkBaseModel } from '../loraxs/factor_cache';
import { createHead, PAIR_OFFSET, type TaskHead } from '../models/heads';
import { resolveChatTemplate, type ChatTemplate } from '../io/chat_template';
import { FactorStore } from './factor_store';
import { HttpError } from './http_error';
import type { PackedR, RowAdapter } from './mixed_context';
import type { BaseModel } from './base_model';

export interface ResidentAdapter extends RowAdapter {
  name: string;
  dir: string;
  config: LoraxsAdapterConfig;
  /** Classification / regression: the adapter's head; causal LM: null (the base model's LM head). */
  head: TaskHead | null;
  labelNames: string[] | null;
  /** Bytes this adapter adds: R and head, float32. */
  bytes: number;
  loadMs: number;
  /** Requests using it now. */
  pins: number;
  chatTemplate(): ChatTemplate;
}

/** A folder name under --adapters: no separators, not `.` or `..`, nothing hidden. */
const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

export class AdapterRegistry {
  readonly factors = new FactorStore();
  /** Resident adapters, least recently used first. */
  private readonly resident = new Map<string, ResidentAdapter>();
  loads = 0;
  evictions = 0;

  constructor(readonly base: BaseModel, readonly adaptersDir: string, readonly budgetBytes: number) {}

  /** The adapter folders under --adapters (those with loraxs_config.json). */
  available(): string[] {
    let names: string[] = [];
    try {
      names = fs.readdirSync(this.adaptersDir).filter((n) => NAME.test(n) && fs.existsSync(path.join(this.adaptersDir, n, CONFIG_FILE)));
    } catch {
      /* a vanished folder lists nothing */
    }
    return names.sort();
  }

  residentAdapters(): ResidentAdapter[] {
    return [...this.resident.values()];
  }

  get bytes(): number {
    let b = this.factors.bytes;
    for (const a of this.resident.values()) b += a.bytes;
    return b;
  }

  /** The folder of adapter `name`, refusing anything but a folder directly under --adapters. */
  folderOf(name: string): string {
    if (typeof name !== 'string' || !NAME.test(name)) {
      throw new HttpError(400, `adapter name ${JSON.stringify(name)} is not a folder name under --adapters (letters, digits, '.', '_', '-'; no paths)`);
    }
    const root = fs.realpathSync(this.adaptersDir);
    const dir = path.join(root, name);
    if (!fs.existsSync(path.join(dir, CONFIG_FILE))) {
      throw new HttpError(404, `no adapter '${name}': ${dir} has no ${CONFIG_FILE} (available: ${this.available().slice(0, 20).join(', ') || 'none'})`, 'model_not_found');
    }
    const real = fs.realpathSync(dir);
    if (path.dirname(real) !== root) throw new HttpError(400, `adapter '${name}' links to ${real}, outside --adapters ${root}`);
    return real;
  }

  /** Adapter `name`, loaded when not resident; marked most recently used. */
  get(name: string): ResidentAdapter {
    const hit = this.resident.get(name);
    if (hit) {
      this.resident.delete(name);
      this.resident.set(name, hit);
      return hit;
    }
    const adapter = this.load(name);
    this.resident.set(name, adapter);
    this.evictOver(name);
    return adapter;
  }

  isResident(name: string): boolean {
    return this.resident.has(name);
  }

  /** Unloads a resident adapter (its files stay); false when it was not resident. */
  unload(name: string): boolean {
    const a = this.resident.get(name);
    if (!a) return false;
    if (a.pins > 0) throw new HttpError(409, `adapter '${name}' is serving ${a.pins} request(s); unload it when they finish`);
    this.drop(a);
    return true;
  }

  dispose(): void {
    for (const a of [...this.resident.values()]) this.drop(a);
    this.factors.dispose();
  }

  private drop(a: ResidentAdapter): void {
    this.resident.delete(a.name);
    for (const p of a.packedR.values()) p.R.dispose();
    a.head?.dispose();
    this.factors.release(a.factorSet.checksum);
  }

  private evictOver(keep: string): void {
    for (const a of [...this.resident.values()]) {
      if (this.bytes <= this.budgetBytes) return;
      if (a.name === keep || a.pins > 0) continue;
      this.drop(a);
      this.evictions++;
    }
  }

  private load(name: string): ResidentAdapter {
    const t0 = performance.now();
    const dir = this.folderOf(name);
    const refuse = (e: unknown): never => {
      if (e instanceof HttpError) throw e;
      const msg = e instanceof LoraxsError ? e.format() : (e as Error).message;
      throw new HttpError(422, `adapter '${name}' cannot be served: ${msg}`, 'adapter_refused');
    };
    let snap: ReturnType<typeof loadAdapter>;
    try {
      snap = loadAdapter(dir);
      checkBaseModel(dir, snap, this.base.fingerprint, this.base.dir);
    } catch (e) {
      return refuse(e);
    }
    const c = snap.config;
    const modules = new Map(this.base.backbone.linearModules().map((m) => [m.name, m]));
    for (const m of c.modules) {
      const found = modules.get(m.name);
      if (!found || found.outFeatures !== m.outFeatures || found.inFeatures !== m.inFeatures) {
        refuse(new LoraxsError(`module ${m.name} [${m.outFeatures}, ${m.inFeatures}] is not a linear layer of this model`, { file: path.join(dir, CONFIG_FILE), detail: 'modules' }));
      }
    }
    if (c.task === 'causal-lm' && this.base.ckpt.config.kind !== 'decoder') refuse(new LoraxsError('a causal-LM adapter needs a decoder base model'));
    if (snap.head.has(PAIR_OFFSET)) refuse(new LoraxsError('bi pair mode (sentence embeddings compared by cosine) is not served; serve cross-mode adapters', { file: path.join(dir, 'head.safetensors') }));
    // Factors: the resident set with this checksum, else the shipped ones or recomputed/cached ones whose
    // checksum must match the adapter's.
    let factorSet;
    try {
      factorSet = this.factors.acquire(c.factorsSha256, () => adapterFactors(dir, snap, this.base.weights));
    } catch (e) {
      return refuse(e);
    }
    const packedR = new Map<number, PackedR>();
    let bytes = 0;
    let head: TaskHead | null = null;
    try {
      // (α / r) · R, one (K, r, r) tensor per rank, modules in the adapter's order.
      for (const rank of [...new Set(c.modules.map((m) => m.rank))]) {
        const mods = c.modules.filter((m) => m.rank === rank);
        const data = new Float32Array(mods.length * rank * rank);
        mods.forEach((m, k) => data.set(snap.R.get(m.name)!.map((v) => Math.fround(v * (c.alpha / rank))), k * rank * rank));
        packedR.set(rank, { R: tf.tensor3d(data, [mods.length, rank, rank]), index: new Map(mods.map((m, k) => [m.name, k])) });
        bytes += 4 * data.length;
      }
      if (c.task !== 'causal-lm') {
        const headTensors = new Map([...snap.head].map(([n, t]) => [n, tf.tensor(t.data, t.shape)]));
        try {
          head = createHead(this.base.backbone, c.task, c.numLabels ?? 1, { seed: 0, checkpointHead: headTensors, pairMode: 'cross' });
        } finally {
          for (const t of headTensors.values()) t.dispose();
        }
        for (const t of snap.head.values()) bytes += 4 * t.data.length;
      }
    } catch (e) {
      for (const p of packedR.values()) p.R.dispose();
      this.factors.release(c.factorsSha256);
      return refuse(e);
    }
    this.loads++;
    let template: ChatTemplate | undefined;
    return {
      name, dir, config: c, factorSet, packedR, head, labelNames: labelNamesOf(c.id2label), bytes,
      loadMs: performance.now() - t0, pins: 0,
      chatTemplate: () => (template ??= resolveChatTemplate({ modelDir: this.base.dir, adapterDir: dir })),
    };
  }
}

/**
 * The LoRA-XS adapters of one model session: which modules are adapted (targets resolved against the
 * backbone), their frozen factors (from the shared cache, or computed by SVD), R (fresh from init, or
 * from a saved adapter), and saving them as an adapter folder.
 */
import * as path from 'node:path';
import * as tf from '../backend/tf';
import { LoraxsError } from '../errors';
import type { AdapterConfig, Task } from '../config/types';
import type { ForwardContext, Weights } from '../models/types';
import type { TaskHead } from '../models/heads';
import type { TransformerBackbone } from '../models/registry';
import { resolveTargets, type ResolvedTarget } from './targets';
import { initR, moduleRng, type Factors } from './init';
import { createAdaptedModule, disposeAdaptedModule, adaptedContext, type AdaptedModule, type AdaptedContextOptions } from './adapted_context';
import { factorsChecksum } from './factor_checksum';
import { loadAdapter, saveAdapter, type AdapterSnapshot, type LoraxsAdapterConfig, type HeadTensor } from './adapter_files';
import { factorsFor, adapterFactors, checkBaseModel, factorSeedOf } from './factor_cache';
import type { EngineEvents, EvalRecord } from '../records';
import { snapshotOf } from '../hub/cache_layout';

export const ENGINE_VERSION = '0.1.0';

export interface AdapterSet {
  config: AdapterConfig;
  seed: number;
  targets: ResolvedTarget[];
  modules: Map<string, AdaptedModule>;
  factors: Map<string, Factors>;
  factorsSha256: string;
  /** The head saved with a loaded adapter (canonical names), else null. */
  savedHead: Map<string, tf.Tensor> | null;
  /** The saved adapter's own config, when loaded from a folder. */
  saved: LoraxsAdapterConfig | null;
  /** Σ r² */
  paramCount(): number;
  context(weights: Weights, opts: AdaptedContextOptions): ForwardContext;
  save(dir: string, info: SaveInfo): void;
  /** What `export --format loraxs-factors` ships. */
  snapshot(info: SaveInfo, withFactors: boolean): AdapterSnapshot;
  dispose(): void;
}

export interface SaveInfo {
  head: TaskHead;
  task: Task;
  labelNames: string[] | null;
  numLabels: number;
  eval: EvalRecord | null;
  modelDir: string;
  /** The chat template of chat-data training, saved as chat_template.jinja. */
  chatTemplate?: string | null;
}

export interface BuildAdaptersOptions {
  backbone: TransformerBackbone;
  modelDir: string;
  fingerprint: string;
  /** The config's adapter section (ignored when adapterDir is given: the saved adapter's settings win). */
  config: AdapterConfig | null;
  seed: number;
  adapterDir?: string;
  events?: EngineEvents;
  configFile?: string;
}

/** The AdapterConfig a saved adapter was trained with. */
export function adapterConfigOf(saved: LoraxsAdapterConfig): AdapterConfig {
  return { rank: saved.rank, rankPattern: saved.rankPattern, alpha: saved.alpha, targets: saved.targets, init: saved.init, initStd: saved.initStd, svd: saved.svd, factorSeed: factorSeedOf(saved) };
}

/** The hub id and commit of a model folder in the Hugging Face cache (a snapshot folder), recorded with the adapter. */
function hubOf(modelDir: string): { hubId: string; commit: string } | Record<string, never> {
  const s = snapshotOf(modelDir);
  return s ? { hubId: s.id, commit: s.commit } : {};
}

/** One warning line when the adapter was trained on another commit of the same hub model. */
export function warnOtherCommit(saved: LoraxsAdapterConfig, modelDir: string, events?: EngineEvents): void {
  const now = snapshotOf(modelDir);
  const { hubId, commit } = saved.baseModel;
  if (!now || hubId !== now.id || commit === undefined || commit === now.commit) return;
  events?.log?.(`warning: this adapter was trained on ${hubId} at commit ${commit.slice(0, 12)}, but the model is now commit ${now.commit.slice(0, 12)}; set revision: ${commit} in the config to use the commit it was trained on`);
}

export function buildAdapters(opts: BuildAdaptersOptions): AdapterSet {
  const { backbone, events } = opts;
  const snapshot = opts.adapterDir ? loadAdapter(opts.adapterDir) : null;
  if (snapshot) warnOtherCommit(snapshot.config, opts.modelDir, events);
  if (snapshot) checkBaseModel(opts.adapterDir!, snapshot, opts.fingerprint, opts.modelDir);
  const config = snapshot ? adapterConfigOf(snapshot.config) : opts.config;
  if (!config) throw new Error('internal error: buildAdapters needs an adapter config or a saved adapter');
  const seed = snapshot ? snapshot.config.seed : opts.seed;
  // The factors' seed is the adapter's own (adapter.factor_seed), not the training seed: adapters of one
  // base model, rank, init and SVD settings then share their factors.
  const factorSeed = snapshot ? factorSeedOf(snapshot.config) : (config.factorSeed ?? 0);
  const targets = resolveTargets(backbone.linearModules(), config.targets, config.rank, config.rankPattern,
    opts.configFile ? { file: opts.configFile } : undefined);
  if (snapshot) {
    const savedNames = snapshot.config.modules.map((m) => m.name).join('\n');
    if (savedNames !== targets.map((t) => t.module.name).join('\n')) {
      throw new LoraxsError('the adapter\'s module list does not match this model\'s modules for its targets',
        { file: path.join(opts.adapterDir!, 'loraxs_config.json'), detail: 'modules' });
    }
  }
  // Factors: shipped with the adapter (checksum verified), else from the shared cache or a fresh SVD;
  // a loaded adapter's recomputed factors must match the checksum it was trained with.
  const onModule = (p: { index: number; total: number }): void => events?.progress?.('SVD init', p.index + 1, p.total);
  const factors = snapshot
    ? adapterFactors(opts.adapterDir!, snapshot, backbone.weights, { onModule })
    : factorsFor(targets.map((t) => ({ name: t.module.name, rank: t.rank })), backbone.weights,
      { fingerprint: opts.fingerprint, init: config.init, svd: config.svd, seed: factorSeed }, { onModule });
  const factorsSha256 = factorsChecksum(targets.map((t) => t.module.name), factors);
  const modules = new Map<string, AdaptedModule>();
  for (const t of targets) {
    const name = t.module.name;
    const R = snapshot ? snapshot.R.get(name)! : initR(t.rank, config.initStd, moduleRng(seed, name, 'R'));
    modules.set(name, createAdaptedModule(name, factors.get(name)!, R, config.alpha, true));
  }
  let savedHead: Map<string, tf.Tensor> | null = null;
  if (snapshot && snapshot.head.size) {
    savedHead = new Map([...snapshot.head].map(([n, h]: [string, HeadTensor]) => [n, tf.tensor(h.data, h.shape)]));
  }

  const snapshotOf = (info: SaveInfo, withFactors: boolean): AdapterSnapshot => {
    const R = new Map<string, Float32Array>();
    for (const [name, m] of modules) R.set(name, m.R.dataSync() as Float32Array);
    const head = new Map<string, HeadTensor>();
    for (const [name, t] of info.head.savedTensors()) head.set(name, t);
    const id2label = info.labelNames ? Object.fromEntries(info.labelNames.map((l, i) => [String(i), l])) : null;
    return {
      config: {
        engineVersion: ENGINE_VERSION,
        baseModel: { path: path.resolve(info.modelDir), fingerprint: opts.fingerprint, ...hubOf(info.modelDir) },
        task: info.task,
        numLabels: info.task === 'causal-lm' ? null : info.numLabels,
        id2label,
        rank: config.rank,
        rankPattern: config.rankPattern,
        alpha: config.alpha,
        init: config.init,
        initStd: config.initStd,
        targets: config.targets,
        svd: config.svd,
        seed,
        factorSeed,
        modules: targets.map((t) => ({ name: t.module.name, rank: t.rank, outFeatures: t.module.outFeatures, inFeatures: t.module.inFeatures })),
        factorsSha256,
      },
      R,
      head,
      factors: withFactors ? factors : undefined,
      ...(info.chatTemplate != null ? { chatTemplate: info.chatTemplate } : {}),
    };
  };

  return {
    config,
    seed,
    targets,
    modules,
    factors,
    factorsSha256,
    savedHead,
    saved: snapshot?.config ?? null,
    paramCount: () => targets.reduce((s, t) => s + t.rank * t.rank, 0),
    context: (weights, ctxOpts) => adaptedContext(weights, modules, ctxOpts),
    save: (dir, info) => saveAdapter(dir, snapshotOf(info, false)),
    snapshot: snapshotOf,
    dispose() {
      for (const m of modules.values()) disposeAdaptedModule(m);
      if (savedHead) for (const t of savedHead.values()) t.dispose();
    },
  };
}

/**
 * Training checkpoints in `<output>/checkpoint/`: `state.json` (where to continue, the best evaluation so
 * far, the optimizer's step counts, a hash of the config) and `tensors.safetensors` (the trainable
 * variables `var/<name>` and AdamW moments `m/<name>`, `v/<name>`).
 *
 * Writing: both files go into `checkpoint.tmp-<pid>/` (tensors first, state.json last, each atomically);
 * then `checkpoint/` is moved aside to `checkpoint.old-<pid>/`, the new folder renamed in, and the old one
 * removed. A failed write (ENOSPC, EACCES, ...) removes the temporary folder, puts the old one back if it
 * was moved, and rethrows, so the previous checkpoint stays valid. A process killed at any moment leaves
 * one of: `checkpoint/` whole (perhaps with a stale `.tmp-*` or `.old-*` beside it), or no `checkpoint/`
 * but a whole `checkpoint.old-*` (killed between the two renames). `recoverCheckpoint` (run by a resume,
 * in whatever process) puts the last whole one back in place and removes the leftovers.
 *
 * Fault injection for tests: the environment variable `LORAXS_FAULT=<point>[@N]` makes the process kill
 * itself with SIGKILL (as `kill -9` would) at the N-th checkpoint write of the process (default 1):
 *
 *   checkpoint-after-temp-write   the temporary folder is complete; `checkpoint/` not yet touched
 *   checkpoint-after-old-rename   `checkpoint/` has been moved to `checkpoint.old-<pid>`; the new one is
 *                                 not renamed in yet (there is no `checkpoint/` at all)
 *   checkpoint-write-error        not a kill: the write fails as a full disk would (an ENOSPC error is
 *                                 thrown after the tensors are written into the temporary folder)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import * as tf from '../backend/tf';
import { LoraxsError } from '../errors';
import type { RunConfig } from '../config/types';
import { writeSafetensors, readSafetensorsHeader, readTensorFloat32, type TensorToWrite } from '../io/safetensors';
import { writeJsonAtomic } from '../io/atomic_write';
import type { SerializedOptimizerState, ParamState } from './optimizers';
import type { EvalRecord } from '../records';

/** Where the next update starts. */
export interface TrainingPosition {
  /** Updates done. */
  step: number;
  /** Epoch of the next update, from 1. */
  epoch: number;
  /** Index of the next batch within that epoch. */
  batchInEpoch: number;
  best: EvalRecord | null;
  bestValue: number | null;
}

interface StateFile {
  format: 'loraxs-training-checkpoint';
  version: 1;
  configHash: string;
  position: TrainingPosition;
  optimizer: { kind: SerializedOptimizerState['kind']; params: Record<string, { step: number; shape: number[]; moments: boolean }> };
}

/** A hash of everything that changes what training computes (not the output folder or eval cadence). */
export function trainingConfigHash(config: RunConfig): string {
  const { model, task, data, adapter, training } = config;
  const { evalEvery: _e, epochs: _n, evalAtStart: _s, ...rest } = training;
  void _e;
  void _n;
  void _s;
  return createHash('sha256').update(JSON.stringify({ model, task, data, adapter, training: rest })).digest('hex').slice(0, 16);
}

/** A checkpoint read off the backend but not yet on disk (see the loop: written once shown good). */
export interface PendingCheckpoint {
  position: TrainingPosition;
  tensors: TensorToWrite[];
  state: StateFile;
}

/** Copies the variables and optimizer state now, so training can go on while the copy waits. */
export function snapshotCheckpoint(config: RunConfig, position: TrainingPosition,
  variables: Map<string, tf.Variable>, optimizer: SerializedOptimizerState): PendingCheckpoint {
  const tensors: TensorToWrite[] = [];
  for (const [name, v] of variables) tensors.push({ name: `var/${name}`, dtype: 'F32', shape: v.shape, data: v.dataSync().slice() as Float32Array });
  const params: StateFile['optimizer']['params'] = {};
  for (const [name, p] of Object.entries(optimizer.params)) {
    params[name] = { step: p.step, shape: p.shape, moments: !!p.m };
    if (p.m) tensors.push({ name: `m/${name}`, dtype: 'F32', shape: p.shape, data: p.m });
    if (p.v) tensors.push({ name: `v/${name}`, dtype: 'F32', shape: p.shape, data: p.v });
  }
  const state: StateFile = { format: 'loraxs-training-checkpoint', version: 1, configHash: trainingConfigHash(config), position: structuredClone(position), optimizer: { kind: optimizer.kind, params } };
  return { position: state.position, tensors, state };
}

const FAULT_POINTS = ['checkpoint-after-temp-write', 'checkpoint-after-old-rename', 'checkpoint-write-error'] as const;
type FaultPoint = typeof FAULT_POINTS[number];
let checkpointWrites = 0;

/** `LORAXS_FAULT` (see the top of this file): whether `point` fires at this checkpoint write. */
function faultDue(point: FaultPoint): boolean {
  const m = /^([a-z-]+)(?:@(\d+))?$/.exec(process.env.LORAXS_FAULT ?? '');
  return m !== null && m[1] === point && checkpointWrites === Number(m[2] ?? 1);
}

function killIfFaultDue(point: FaultPoint): void {
  if (faultDue(point)) {
    process.stderr.write(`LORAXS_FAULT=${process.env.LORAXS_FAULT}: killing this process (SIGKILL)\n`);
    process.kill(process.pid, 'SIGKILL');
  }
}

/** Writes a checkpoint into `dir`, replacing the previous one only once the new one is whole. */
export function writeCheckpoint(dir: string, pending: PendingCheckpoint): void {
  checkpointWrites++;
  const tmp = `${dir}.tmp-${process.pid}`;
  const old = `${dir}.old-${process.pid}`;
  let movedAside = false;
  try {
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp, { recursive: true });
    writeSafetensors(path.join(tmp, 'tensors.safetensors'), pending.tensors, { format: 'loraxs-training-checkpoint' });
    if (faultDue('checkpoint-write-error')) {
      throw Object.assign(new Error(`ENOSPC: no space left on device, write '${path.join(tmp, 'state.json')}' (LORAXS_FAULT)`),
        { code: 'ENOSPC', errno: -28, syscall: 'write', path: path.join(tmp, 'state.json') });
    }
    writeJsonAtomic(path.join(tmp, 'state.json'), pending.state);
    killIfFaultDue('checkpoint-after-temp-write');
    if (fs.existsSync(dir)) {
      fs.rmSync(old, { recursive: true, force: true });
      fs.renameSync(dir, old);
      movedAside = true;
    }
    killIfFaultDue('checkpoint-after-old-rename');
    fs.renameSync(tmp, dir);
  } catch (e) {
    // Leave things as they were: no temporary folder, the previous checkpoint in place.
    try {
      fs.rmSync(tmp, { recursive: true, force: true });
      if (movedAside && !fs.existsSync(dir)) fs.renameSync(old, dir);
    } catch {
      /* already failing; the first error is the one to report (a resume recovers a left `.old-*`) */
    }
    throw e;
  }
  try {
    fs.rmSync(old, { recursive: true, force: true });
    removeLeftovers(dir);
  } catch {
    /* the new checkpoint is in place; a leftover folder is removed by the next write or resume */
  }
}

/** `checkpoint.tmp-*` and `checkpoint.old-*` beside `dir` (left by a process that was killed or failed). */
function leftovers(dir: string): string[] {
  const parent = path.dirname(dir);
  const base = path.basename(dir);
  let names: string[];
  try {
    names = fs.readdirSync(parent);
  } catch {
    return [];
  }
  return names.filter((n) => /^\.(tmp|old)-\d+$/.test(n.slice(base.length)) && n.startsWith(base)).map((n) => path.join(parent, n));
}

function removeLeftovers(dir: string): void {
  for (const f of leftovers(dir)) fs.rmSync(f, { recursive: true, force: true });
}

/** The position of the checkpoint in `dir` when both its files are whole and agree, else null. */
function wholeCheckpointPosition(dir: string): TrainingPosition | null {
  try {
    const state = JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8')) as StateFile;
    if (state.format !== 'loraxs-training-checkpoint' || typeof state.position?.step !== 'number') return null;
    const header = readSafetensorsHeader(path.join(dir, 'tensors.safetensors'));
    for (const [name, p] of Object.entries(state.optimizer.params)) {
      if (p.moments && (!header.tensors.has(`m/${name}`) || !header.tensors.has(`v/${name}`))) return null;
    }
    return state.position;
  } catch {
    return null;
  }
}

/**
 * Makes `dir` hold the last whole checkpoint after a process was killed or failed at any point of a
 * write: when `dir` is missing or incomplete, a whole `checkpoint.old-*` (killed between the renames)
 * takes its place, else a whole `checkpoint.tmp-*` (killed after writing the first checkpoint, before
 * renaming it in). Then every leftover `.tmp-*` / `.old-*` is removed. Returns a sentence for the log
 * when it recovered something, else null.
 */
export function recoverCheckpoint(dir: string): string | null {
  const found = leftovers(dir);
  if (found.length === 0) return null;
  let recovered: string | null = null;
  if (!wholeCheckpointPosition(dir)) {
    const whole = found
      .map((f) => ({ f, pos: wholeCheckpointPosition(f), old: /\.old-\d+$/.test(f) }))
      .filter((c) => c.pos !== null)
      // A moved-aside checkpoint (the last one completed) before a temporary one; then the latest.
      .sort((a, b) => Number(b.old) - Number(a.old) || b.pos!.step - a.pos!.step);
    if (whole.length > 0) {
      fs.rmSync(dir, { recursive: true, force: true });
      fs.renameSync(whole[0].f, dir);
      recovered = `recovered the checkpoint of update ${whole[0].pos!.step} from ${path.basename(whole[0].f)} (a run was stopped while saving one)`;
    }
  }
  removeLeftovers(dir);
  return recovered;
}

/** Where the checkpoint in `dir` continues from, or null when there is none (reads state.json only). */
export function loadTrainingCheckpointPosition(dir: string): TrainingPosition | null {
  try {
    return (JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8')) as StateFile).position;
  } catch {
    return null;
  }
}

export interface LoadedCheckpoint {
  position: TrainingPosition;
  /** Trainable variable values by name; the caller assigns and disposes them. */
  variables: Map<string, tf.Tensor>;
  optimizer: SerializedOptimizerState;
}

/** The checkpoint in `dir`, or null when there is none. Refuses one written for a different config. */
export function loadTrainingCheckpoint(dir: string, config: RunConfig): LoadedCheckpoint | null {
  const stateFile = path.join(dir, 'state.json');
  if (!fs.existsSync(stateFile)) return null;
  let state: StateFile;
  try {
    state = JSON.parse(fs.readFileSync(stateFile, 'utf8'));
  } catch (e) {
    throw new LoraxsError(`the training checkpoint is unreadable: ${(e as Error).message}`, { file: stateFile });
  }
  if (state.format !== 'loraxs-training-checkpoint') throw new LoraxsError('not a LoRA-XS training checkpoint', { file: stateFile });
  if (state.configHash !== trainingConfigHash(config)) {
    throw new LoraxsError(
      'the checkpoint was written for a different configuration (model, data, adapter or training settings changed); ' +
      'resume with the config it was trained with, or train afresh without --resume', { file: config.file });
  }
  const header = readSafetensorsHeader(path.join(dir, 'tensors.safetensors'));
  const variables = new Map<string, tf.Tensor>();
  for (const [name, entry] of header.tensors) {
    if (name.startsWith('var/')) variables.set(name.slice(4), tf.tensor(readTensorFloat32(header, name), entry.shape));
  }
  const params: Record<string, ParamState> = {};
  for (const [name, p] of Object.entries(state.optimizer.params)) {
    params[name] = { step: p.step, shape: p.shape };
    if (p.moments) {
      params[name].m = readTensorFloat32(header, `m/${name}`);
      params[name].v = readTensorFloat32(header, `v/${name}`);
    }
  }
  return { position: state.position, variables, optimizer: { kind: state.optimizer.kind, params } };
}

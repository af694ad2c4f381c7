/**
 * Training checkpoints in `<output>/checkpoint/`: `state.json` (where to continue, the best evaluation so
 * far, the optimizer's step counts, a hash of the config) and `tensors.safetensors` (the trainable
 * variables `var/<name>` and AdamW moments `m/<name>`, `v/<name>`). Written into a temporary folder and
 * swapped in, so a crash mid-write leaves the previous checkpoint whole.
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
  const { evalEvery: _e, epochs: _n, ...rest } = training;
  void _e;
  void _n;
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

/** Writes a checkpoint into `dir`, replacing the previous one only once the new one is whole. */
export function writeCheckpoint(dir: string, pending: PendingCheckpoint): void {
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  writeSafetensors(path.join(tmp, 'tensors.safetensors'), pending.tensors, { format: 'loraxs-training-checkpoint' });
  writeJsonAtomic(path.join(tmp, 'state.json'), pending.state);
  const old = `${dir}.old-${process.pid}`;
  if (fs.existsSync(dir)) fs.renameSync(dir, old);
  fs.renameSync(tmp, dir);
  fs.rmSync(old, { recursive: true, force: true });
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

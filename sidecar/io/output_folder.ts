/**
 * Output folders never destroy what the tool did not write.
 *
 * Every folder `train`, `merge` and `export` create carries a marker file, `.loraxs-output` (JSON: what
 * wrote it, the version, when). Before a job loads anything heavy, `preflightOutput` checks where it will
 * write and refuses, with one line saying what to do:
 *
 * - the current folder (or one that contains it) and a file-system root;
 * - the model folder, the adapter, the config, a data file, or any folder that contains one of them;
 * - a file where the folder should be;
 * - a non-empty folder without the marker (a folder from before the marker existed counts as marked
 *   when it holds `loraxs_config.json` or `metrics.jsonl`: a finished run or an adapter);
 * - a marked folder, unless the request says `overwrite` (or, for training, `resume`);
 * - a location that is not writable, or a file system without room for what the job will write
 *   (estimated from the safetensors headers; statfs).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LoraxsError } from '../errors';
import { EXIT, FsUserError, fsErrorFor, isErrnoError, isUserErrno } from './fs_errors';

export const OUTPUT_MARKER = '.loraxs-output';

/** package.json's version (the same as `loraxs --version` and an adapter's engine_version). */
export const LORAXS_VERSION = '0.1.0';

/** Files that mark a folder written by LoRA-XS before the marker existed (an adapter, a training run). */
export const LEGACY_MARKERS = ['loraxs_config.json', 'metrics.jsonl'];

export interface OutputMarker {
  tool: 'loraxs';
  /** What wrote the folder: train, merge, export, import. */
  writer: string;
  version: string;
  /** ISO time of the write. */
  written: string;
}

export function markerFor(writer: string): OutputMarker {
  return { tool: 'loraxs', writer, version: LORAXS_VERSION, written: new Date().toISOString() };
}

/** Writes `dir/.loraxs-output` (plain write: callers write into a temporary folder, or the file is tiny). */
export function writeOutputMarker(dir: string, writer: string): void {
  fs.writeFileSync(path.join(dir, OUTPUT_MARKER), JSON.stringify(markerFor(writer), null, 2) + '\n');
}

/** The marker of `dir`, or null when it has none (or one that is not ours). */
export function readOutputMarker(dir: string): OutputMarker | null {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(dir, OUTPUT_MARKER), 'utf8')) as Partial<OutputMarker>;
    return m && typeof m === 'object' && typeof m.writer === 'string' ? { tool: 'loraxs', writer: m.writer, version: String(m.version ?? ''), written: String(m.written ?? '') } : null;
  } catch {
    return null;
  }
}

export type FolderState =
  | { kind: 'missing' }
  | { kind: 'not-a-folder' }
  | { kind: 'empty' }
  /** Written by LoRA-XS: its marker, or null for a folder from before the marker (legacy files). */
  | { kind: 'marked'; marker: OutputMarker | null; entries: string[] }
  | { kind: 'foreign'; entries: string[] };

/** What is at `dir` now. */
export function folderState(dir: string): FolderState {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch (e) {
    // ENOTDIR: a part of the path is a file; the writability check names it.
    if (isErrnoError(e) && (e.code === 'ENOENT' || e.code === 'ENOTDIR')) return { kind: 'missing' };
    throw e;
  }
  if (!st.isDirectory()) return { kind: 'not-a-folder' };
  const entries = fs.readdirSync(dir).sort();
  if (!entries.length) return { kind: 'empty' };
  if (entries.includes(OUTPUT_MARKER)) return { kind: 'marked', marker: readOutputMarker(dir), entries };
  if (LEGACY_MARKERS.some((f) => entries.includes(f))) return { kind: 'marked', marker: null, entries };
  return { kind: 'foreign', entries };
}

/** Why an output location was refused. */
export type OutputRefusal =
  /** It holds LoRA-XS output; `overwrite` (or `resume`) says to replace (or continue) it. */
  | 'exists'
  /** A non-empty folder LoRA-XS did not write. */
  | 'foreign'
  /** A file (or something else) where the folder should be. */
  | 'not-a-folder'
  /** The current folder, one that contains it, or a file-system root. */
  | 'cwd'
  /** It is, or contains, one of the job's inputs. */
  | 'input';

/** A refused output location: `path: why; what to do`, exit 73. */
export class OutputRefusedError extends LoraxsError {
  readonly exitCode = EXIT.cantCreate;
  constructor(message: string, readonly output: string, readonly refusal: OutputRefusal,
    /** 'exists': what wrote it (null: a folder from before the marker). */
    readonly writer: string | null = null,
    /** 'exists', training: the folder holds a checkpoint to resume from. */
    readonly resumable = false) {
    super(message, { file: output });
  }
}

/** Not enough room: `path: ...`, exit 74 (like ENOSPC). */
export function noSpaceError(output: string, needed: number, free: number, where: string, job: string): FsUserError {
  return new FsUserError(
    `not enough free space: this ${job} writes about ${formatBytes(needed)} and ${where} has ${formatBytes(free)} free (ENOSPC); free some space or choose a location on another disk`,
    output, 'ENOSPC', EXIT.io);
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export interface OutputInput {
  path: string;
  /** How the message names it: "the model folder", "the adapter", "the config file", "the data file". */
  what: string;
}

export interface OutputPlan {
  job: 'train' | 'merge' | 'export';
  outDir: string;
  /** What the job reads: the output may be none of these nor contain one. */
  inputs: OutputInput[];
  overwrite: boolean;
  /** Training: continue the run in the folder (it must be LoRA-XS output). */
  resume?: boolean;
  /** Bytes the job will write into the output (an estimate; 0 skips the space check). */
  bytes: number;
  /**
   * 'swap': the folder is built beside it (`<out>.tmp-<pid>`) and renamed into place, so its parent must be
   * writable; 'into': files are written into the folder (training).
   */
  mode: 'swap' | 'into';
}

export interface OutputCheck {
  /** The absolute output folder. */
  outDir: string;
  state: FolderState;
}

/** `p` with symbolic links resolved as far as it exists (the rest appended). */
export function realPathLoose(p: string): string {
  const abs = path.resolve(p);
  const rest: string[] = [];
  let cur = abs;
  for (;;) {
    try {
      return path.join(fs.realpathSync.native(cur), ...rest.reverse());
    } catch {
      const parent = path.dirname(cur);
      if (parent === cur) return abs;
      rest.push(path.basename(cur));
      cur = parent;
    }
  }
}

/** Whether `inner` is `outer` or inside it (both absolute, normalised). */
export function isInside(inner: string, outer: string): boolean {
  const rel = path.relative(outer, inner);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** The nearest folder on the way up from `p` that exists (for a path not created yet). */
export function nearestExisting(p: string): string {
  let cur = path.resolve(p);
  for (;;) {
    if (fs.existsSync(cur)) return cur;
    const parent = path.dirname(cur);
    if (parent === cur) return cur;
    cur = parent;
  }
}

const EXAMPLE_OUT = { train: 'output: runs/my-run', merge: '--out ./merged', export: '--out ./exported' } as const;

function fold(entries: string[]): string {
  const shown = entries.slice(0, 4).join(', ');
  return entries.length > 4 ? `${shown}, … (${entries.length} entries)` : shown;
}

function hasCheckpoint(entries: string[]): boolean {
  return entries.some((e) => e === 'checkpoint' || e.startsWith('checkpoint.'));
}

/**
 * Checks the output location of a job before it loads anything heavy; throws an OutputRefusedError or an
 * FsUserError (one line naming the path and what to do). Creates and writes nothing.
 */
export function preflightOutput(plan: OutputPlan): OutputCheck {
  const outDir = path.resolve(plan.outDir);
  const real = realPathLoose(outDir);
  const flag = plan.job === 'export' || plan.job === 'merge' ? '--out' : 'output';

  if (path.parse(real).root === real) {
    throw new OutputRefusedError(`is the root of a file system; name a new folder for the ${plan.job} output`, outDir, 'cwd');
  }
  const cwd = realPathLoose(process.cwd());
  if (isInside(cwd, real)) {
    const which = cwd === real ? 'is the current folder' : 'contains the current folder';
    throw new OutputRefusedError(`${which}, which would be replaced; name a new folder for the ${plan.job} output (e.g. ${EXAMPLE_OUT[plan.job]})`, outDir, 'cwd');
  }
  for (const input of plan.inputs) {
    const inReal = realPathLoose(input.path);
    if (isInside(inReal, real)) {
      const which = inReal === real ? `is ${input.what}` : `contains ${input.what} (${input.path})`;
      throw new OutputRefusedError(`${which}; writing the ${plan.job} output there would replace it: choose another folder`, outDir, 'input');
    }
  }

  const state = folderState(outDir);
  switch (state.kind) {
    case 'not-a-folder':
      throw new OutputRefusedError(`is a file, not a folder; remove or rename it, or choose another ${flag === '--out' ? '--out folder' : 'output folder'}`, outDir, 'not-a-folder');
    case 'foreign':
      throw new OutputRefusedError(
        `is not empty and was not written by LoRA-XS (no ${OUTPUT_MARKER}; it holds ${fold(state.entries)}); choose a new or empty folder ` +
        `(${plan.job === 'train' ? 'overwriting' : '--overwrite'} only replaces folders LoRA-XS wrote)`, outDir, 'foreign');
    case 'marked': {
      if (plan.overwrite || (plan.job === 'train' && plan.resume)) break;
      const what = state.marker ? `the output of a previous ${state.marker.writer}${state.marker.written ? ` (${state.marker.written})` : ''}` : 'the output of a previous LoRA-XS run';
      const resumable = plan.job === 'train' && hasCheckpoint(state.entries);
      const how = plan.job === 'train'
        ? `pass --overwrite to replace it${resumable ? ' or --resume to continue that run' : ''}, or set another output in the config`
        : `pass --overwrite to replace it, or choose another ${flag} folder`;
      throw new OutputRefusedError(`already holds ${what}; ${how}`, outDir, 'exists', state.marker?.writer ?? null, resumable);
    }
    default:
      break;
  }

  // Writable: 'swap' renames beside the folder (its parent); 'into' writes inside it.
  const writeAt = plan.mode === 'into' && state.kind !== 'missing' ? outDir : nearestExisting(path.dirname(outDir));
  if (!fs.statSync(writeAt).isDirectory()) {
    throw new FsUserError(`a part of this path (${writeAt}) is a file, not a folder (ENOTDIR); fix the path or move the file out of the way`, outDir, 'ENOTDIR', EXIT.cantCreate);
  }
  const probe = [writeAt, ...(plan.mode === 'swap' && state.kind === 'marked' ? [outDir] : [])];
  for (const p of probe) {
    try {
      fs.accessSync(p, fs.constants.W_OK | fs.constants.X_OK);
    } catch (e) {
      if (isErrnoError(e) && isUserErrno(e.code)) throw fsErrorFor(e.code, outDir, p);
      throw e;
    }
  }
  if (plan.bytes > 0) {
    const free = freeBytes(writeAt);
    if (free !== null && free < plan.bytes) throw noSpaceError(outDir, plan.bytes, free, writeAt, plan.job);
  }
  return { outDir, state };
}

/** Free bytes for this user on the file system of `dir`, or null where statfs is unavailable. */
export function freeBytes(dir: string): number | null {
  try {
    const s = fs.statfsSync(dir);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return null;
  }
}

/**
 * `<output>/metrics.jsonl`: one line per optimizer update ({step, epoch, loss, lr, tokens_per_s, ...}), one
 * per evaluation ({step, epoch, eval: {...}}) and one per new best evaluation ({step, epoch, best: {...}}).
 * Appended as the run goes, so a crash loses nothing, and trimmed back to a checkpoint's step on resume
 * (a line torn by a kill mid-append is dropped then).
 */
import * as fs from 'node:fs';
import { writeFileAtomic } from '../io/atomic_write';

export function appendMetricsLine(file: string, record: object): void {
  fs.appendFileSync(file, JSON.stringify(record) + '\n');
}

/**
 * Keeps the lines up to and including `step` (updates, evaluations, best lines); drops torn lines and
 * lines without a step. A negative `step` empties the log.
 */
export function trimMetricsLog(file: string, step: number): void {
  if (!fs.existsSync(file)) {
    writeFileAtomic(file, '');
    return;
  }
  const kept: string[] = [];
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    let rec: { step?: unknown };
    try {
      rec = JSON.parse(line);
    } catch {
      continue; // a line torn by a crash mid-write
    }
    if (typeof rec.step === 'number' && rec.step <= step) kept.push(line);
  }
  writeFileAtomic(file, kept.map((l) => l + '\n').join(''));
}

/** Reads metrics.jsonl back (the training panel rebuilds its curves from it). */
export function readMetricsLog(file: string): object[] {
  if (!fs.existsSync(file)) return [];
  const out: object[] = [];
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      /* torn line */
    }
  }
  return out;
}

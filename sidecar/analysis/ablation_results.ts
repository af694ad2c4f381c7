/**
 * What an analysis writes: the report types, `<output>/analysis/<kind>.json` and `.csv`, and the
 * per-cell cache `<kind>.cells.json` that lets a cancelled sweep resume. Every file is written atomically.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from '../io/atomic_write';
import type { AblationReport, AnalysisKind } from '../records';




/** The analysis folder of a run's output. */
export function analysisDir(output: string): string {
  return path.join(output, 'analysis');
}

/** A CSV field, quoted when it holds a comma, quote or newline. */
export function csvField(v: unknown): string {
  const s = v === null || v === undefined ? '' : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Rows of objects as CSV with the given columns (header first). */
export function toCsv(columns: string[], rows: Array<Record<string, unknown>>): string {
  return [columns.join(','), ...rows.map((r) => columns.map((c) => csvField(r[c])).join(','))].join('\n') + '\n';
}

export const ABLATION_CSV_COLUMNS = ['module', 'layer', 'region', 'fraction', 'value'];

/** Writes `<dir>/<kind>.json` and `<dir>/<kind>.csv`; returns the two paths. */
export function writeReport(dir: string, kind: string, report: object, csv: string): { json: string; csv: string } {
  fs.mkdirSync(dir, { recursive: true });
  const json = path.join(dir, `${kind}.json`);
  const csvFile = path.join(dir, `${kind}.csv`);
  writeJsonAtomic(json, report);
  writeFileAtomic(csvFile, csv);
  return { json, csv: csvFile };
}

export function writeAblationReport(dir: string, report: AblationReport): { json: string; csv: string } {
  return writeReport(dir, report.kind, report, toCsv(ABLATION_CSV_COLUMNS, report.results as unknown as Array<Record<string, unknown>>));
}

/** A saved report, or null when absent or unreadable. */
export function readReport<T>(dir: string, kind: AnalysisKind): T | null {
  const file = path.join(dir, `${kind}.json`);
  if (!fs.existsSync(file)) return null;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

/**
 * Measured values by cell, kept for one setup (model, adapter, data, limit...): a different setup starts
 * afresh. Saved after every cell, so a cancelled or crashed sweep loses at most the cell in progress.
 */
export class CellCache {
  private values = new Map<string, number>();
  private readonly file: string;

  constructor(dir: string, kind: string, private readonly setup: string) {
    this.file = path.join(dir, `${kind}.cells.json`);
    try {
      const saved = JSON.parse(fs.readFileSync(this.file, 'utf8')) as { setup?: string; values?: Record<string, number | null> };
      // JSON has no NaN: a metric that was undefined (e.g. Pearson of constant predictions) is saved as null.
      if (saved.setup === setup && saved.values) this.values = new Map(Object.entries(saved.values).map(([k, v]) => [k, v ?? NaN]));
    } catch {
      /* absent or unreadable: start afresh */
    }
  }

  get size(): number {
    return this.values.size;
  }

  get(key: string): number | undefined {
    return this.values.get(key);
  }

  set(key: string, value: number): void {
    this.values.set(key, value);
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    writeJsonAtomic(this.file, { setup: this.setup, values: Object.fromEntries(this.values) });
  }
}

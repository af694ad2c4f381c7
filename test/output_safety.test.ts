/**
 * Outputs never destroy what the tool did not write (issue 10, items 3–5), tried as users run it: the
 * `loraxs` CLI spawned as its own process (and the sidecar over the real LSP stream for the protocol).
 *
 * - merge / export / train into a non-empty folder of the user's, onto a regular file, into `.`, into the
 *   model folder or a folder that holds it: refused with one line and exit 73, every byte in place;
 * - a folder LoRA-XS wrote (its `.loraxs-output` marker, or a run from before the marker) is replaced
 *   only with --overwrite (the LSP says so with OutputErrorData `output-exists`);
 * - a read-only output (tmpfs remounted ro) is refused before the model loads (exit 73); a full disk is
 *   refused by the pre-flight, and a disk that fills up during the write (no inodes left) gives one line,
 *   exit 74, no stack and no temporary folder.
 *
 * The mounts need root: with CI=true a refused mount fails the test, elsewhere the test is skipped with the
 * reason. Everything mounted is unmounted in `finally`.
 */
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { repoRoot, tempDir } from './paths';
import { makeWorkspace } from './workspace';
import { cliRunner, tinyBertConfig } from './cli_harness';
import { GOOD_CONFIG, makeWorkspace as makeLspWorkspace, withSidecar } from './lsp_harness';
import { MergeRequest, ExportRequest, TrainRequest, isOutputExists } from '../sidecar/protocol';

const runCli = cliRunner('out');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

const loraxs = (args: string[], cwd: string): Run => runCli(args, cwd);

const CONFIG = tinyBertConfig();

/** Every file, folder and link under `dir` with a hash of its bytes. */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const rel = path.relative(dir, p);
      if (e.isSymbolicLink()) out[rel] = `link:${fs.readlinkSync(p)}`;
      else if (e.isDirectory()) {
        out[rel] = 'dir';
        walk(p);
      } else out[rel] = createHash('sha256').update(fs.readFileSync(p)).digest('hex');
    }
  };
  walk(dir);
  return out;
}

/** Temporary files or folders of an atomic write (`x.tmp-<pid>`, `x.old-<pid>`) anywhere under `dir`. */
function leftovers(dir: string): string[] {
  return Object.keys(tree(dir)).filter((p) => /\.(tmp|old)-\d+($|[\\/])/.test(p));
}

/** The refusal as a user sees it: exit `code`, exactly one error line matching `expect`, no stack, nothing on stdout. */
function assertCleanError(r: Run, code: number, expect: RegExp, what: string): string {
  assert.equal(r.code, code, `${what}: exit ${r.code}\n${r.stderr}`);
  const errors = r.stderr.split('\n').filter((l) => /error/.test(l));
  assert.equal(errors.length, 1, `${what}: one error line\n${r.stderr}`);
  assert.match(errors[0], expect, what);
  assert.doesNotMatch(r.stderr, /internal error|^\s+at /m, `${what}: no stack trace`);
  assert.equal(r.stdout, '', `${what}: nothing on stdout`);
  return errors[0];
}

/** The lines of stderr that are not the native TensorFlow library's start-up chatter. */
function ownLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.trim() && !/^(WARNING: All log messages|I0000 |W0000 )/.test(l));
}

/** A workspace with the tiny BERT and an adapter trained for one epoch (shared by the tests below). */
let trained: { dir: string; model: string; adapter: string; config: string } | undefined;
function workspace(): NonNullable<typeof trained> {
  if (trained) return trained;
  const ws = makeWorkspace('bert', 'seq-cls');
  const config = ws.config('run', CONFIG);
  const t = loraxs(['train', config], ws.dir);
  assert.equal(t.code, 0, t.stderr);
  trained = { dir: ws.dir, model: ws.model, adapter: path.join(ws.dir, 'out'), config };
  return trained;
}

/** A folder of the user's: files and a subfolder, nothing LoRA-XS wrote. */
function userFolder(parent: string, name: string): string {
  const dir = path.join(parent, name);
  fs.mkdirSync(path.join(dir, 'raw'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'README.md'), '# my notes\n');
  fs.writeFileSync(path.join(dir, 'raw', 'data.bin'), Buffer.from([1, 2, 3, 4, 5]));
  return dir;
}

test('merge and export never replace a user folder, a file, `.`, the model folder or a folder holding it: exit 73, every byte in place', () => {
  const ws = workspace();
  const mine = userFolder(ws.dir, 'mine');
  const file = path.join(ws.dir, 'notes.txt');
  fs.writeFileSync(file, 'a file where a folder would go\n');
  const empty = path.join(ws.dir, 'empty-cwd');
  fs.mkdirSync(empty);
  const elsewhere = tempDir('loraxs-cwd-');
  const merge = (out: string, cwd = ws.dir, extra: string[] = []) => loraxs(['merge', ws.config, '--adapter', ws.adapter, '--out', out, ...extra], cwd);
  const exp = (out: string, cwd = ws.dir, extra: string[] = []) => loraxs(['export', '--adapter', ws.adapter, '--format', 'peft-lora', '--out', out, ...extra], cwd);
  const cases: Array<{ what: string; run: () => Run; expect: RegExp }> = [];
  for (const [job, run] of [['merge', merge], ['export', exp]] as const) {
    cases.push(
      { what: `${job} into a folder with the user's files`, run: () => run(mine), expect: /mine: is not empty and was not written by LoRA-XS .*README\.md, raw/ },
      { what: `${job} --overwrite into a folder with the user's files`, run: () => run(mine, ws.dir, ['--overwrite']), expect: /mine: is not empty and was not written by LoRA-XS/ },
      { what: `${job} onto a regular file`, run: () => run(file), expect: /notes\.txt: is a file, not a folder/ },
      { what: `${job} --out . (the workspace)`, run: () => run('.'), expect: /is the current folder/ },
      { what: `${job} --out . (an empty folder)`, run: () => run('.', empty), expect: /empty-cwd: is the current folder/ },
      { what: `${job} into the model folder`, run: () => run(ws.model, ws.dir, ['--overwrite']), expect: /model: is the model folder/ },
      { what: `${job} into the folder that holds the model`, run: () => run(ws.dir, elsewhere), expect: /: contains (the model folder|the adapter) / },
      { what: `${job} into the adapter`, run: () => run(ws.adapter, ws.dir, ['--overwrite']), expect: /out: is the adapter/ },
    );
  }
  const before = tree(ws.dir);
  for (const c of cases) {
    assertCleanError(c.run(), 73, c.expect, c.what);
    assert.deepEqual(tree(ws.dir), before, `${c.what}: every byte in place`);
  }
  assert.deepEqual(leftovers(ws.dir), []);
  assert.deepEqual(leftovers(path.dirname(ws.dir)).filter((p) => p.startsWith(path.basename(ws.dir))), [], 'nothing beside the workspace either');
});

test('a folder LoRA-XS wrote is replaced only with --overwrite; it carries the marker; a run from before the marker counts as marked', () => {
  const ws = workspace();
  const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  for (const [job, args] of [
    ['merge', ['merge', ws.config, '--adapter', ws.adapter, '--out', 'merged']],
    ['export', ['export', '--adapter', ws.adapter, '--format', 'loraxs-official', '--out', 'exported']],
  ] as const) {
    const out = path.join(ws.dir, args[args.length - 1]);
    const first = loraxs([...args], ws.dir);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout.trim(), out);
    const marker = JSON.parse(fs.readFileSync(path.join(out, '.loraxs-output'), 'utf8'));
    assert.equal(marker.writer, job);
    assert.equal(marker.version, pkg.version);
    assert.ok(!Number.isNaN(Date.parse(marker.written)), `a time: ${marker.written}`);

    const before = tree(ws.dir);
    assertCleanError(loraxs([...args], ws.dir), 73, new RegExp(`${path.basename(out)}: already holds the output of a previous ${job} .*--overwrite`), `${job} again`);
    assert.deepEqual(tree(ws.dir), before, `${job} again: every byte in place`);

    fs.writeFileSync(path.join(out, 'stale.txt'), 'from before');
    const again = loraxs([...args, '--overwrite'], ws.dir);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(fs.existsSync(path.join(out, 'stale.txt')), false, `${job} --overwrite replaced the folder`);
    assert.ok(fs.existsSync(path.join(out, '.loraxs-output')));
  }
  // An adapter folder from before the marker (loraxs_config.json) counts as LoRA-XS output.
  const legacy = path.join(ws.dir, 'legacy');
  fs.cpSync(ws.adapter, legacy, { recursive: true });
  fs.rmSync(path.join(legacy, '.loraxs-output'));
  const refused = loraxs(['export', '--adapter', ws.adapter, '--format', 'peft-lora', '--out', legacy], ws.dir);
  assertCleanError(refused, 73, /legacy: already holds the output of a previous LoRA-XS run/, 'export onto a run from before the marker');
  const replaced = loraxs(['export', '--adapter', ws.adapter, '--format', 'peft-lora', '--out', legacy, '--overwrite'], ws.dir);
  assert.equal(replaced.code, 0, replaced.stderr);
  assert.deepEqual(fs.readdirSync(legacy).sort(), ['.loraxs-output', 'adapter_config.json', 'adapter_model.safetensors']);
  assert.deepEqual(leftovers(ws.dir), []);
});

test('train: an existing run is refused (exit 73; --overwrite replaces it), and so is an output that holds the config or the data', () => {
  const ws = workspace();
  const before = tree(ws.dir);
  assertCleanError(loraxs(['train', ws.config], ws.dir), 73, /out: already holds the output of a previous train .*--overwrite .*--resume/, 'train again');
  assert.deepEqual(tree(ws.dir), before, 'train again: every byte in place');

  const here = path.join(ws.dir, 'here.loraxs.yaml');
  fs.writeFileSync(here, CONFIG.replace('output: out', 'output: .'));
  const mine = userFolder(ws.dir, 'mine-train');
  const theirs = path.join(ws.dir, 'theirs.loraxs.yaml');
  fs.writeFileSync(theirs, CONFIG.replace('output: out', 'output: mine-train'));
  const snapshot = tree(ws.dir);
  assertCleanError(loraxs(['train', here, '--overwrite'], ws.dir), 73, /is the current folder/, 'train into the current folder');
  assertCleanError(loraxs(['train', here, '--overwrite'], tempDir('loraxs-cwd-')), 73, /: contains the model folder/, 'train into the folder of its model, config and data');
  assertCleanError(loraxs(['train', theirs, '--overwrite'], ws.dir), 73, /mine-train: is not empty and was not written by LoRA-XS/, 'train into a user folder');
  assert.deepEqual(tree(ws.dir), snapshot, 'every byte in place');
  assert.ok(fs.existsSync(path.join(mine, 'README.md')));

  // --overwrite replaces a marked run: the old run's files (and checkpoint) go, the new run's are there.
  const other = path.join(ws.dir, 'other.loraxs.yaml');
  fs.writeFileSync(other, CONFIG.replace('output: out', 'output: runs/other'));
  assert.equal(loraxs(['train', other], ws.dir).code, 0);
  fs.writeFileSync(path.join(ws.dir, 'runs', 'other', 'stale.txt'), 'old');
  const r = loraxs(['train', other, '--overwrite'], ws.dir);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(fs.existsSync(path.join(ws.dir, 'runs', 'other', 'stale.txt')), false);
  assert.equal(JSON.parse(fs.readFileSync(path.join(ws.dir, 'runs', 'other', '.loraxs-output'), 'utf8')).writer, 'train');
  assert.deepEqual(leftovers(ws.dir), []);
});

test('the sidecar refuses an existing output with OutputErrorData: output-exists (then overwrite: true works), output-refused for a user folder', async () => {
  const ws = makeLspWorkspace();
  const { uri } = ws.config('tiny', GOOD_CONFIG);
  await withSidecar({ trusted: true, rootDir: ws.dir }, async (s) => {
    const trainedRun = await s.conn.sendRequest(TrainRequest.type, { uri });
    const again = await s.conn.sendRequest(TrainRequest.type, { uri }).then(() => null, (e: { message: string; data?: unknown }) => e);
    assert.ok(again && isOutputExists(again.data), `output-exists: ${JSON.stringify(again)}`);
    assert.equal(again.data.output, trainedRun.output);
    assert.equal(again.data.exitCode, 73);
    assert.match(again.message, /already holds the output of a previous train/);

    const merged = path.join(ws.dir, 'merged');
    await s.conn.sendRequest(MergeRequest.type, { uri, adapterDir: trainedRun.adapterDir, outDir: merged });
    const refused = await s.conn.sendRequest(MergeRequest.type, { uri, adapterDir: trainedRun.adapterDir, outDir: merged }).then(() => null, (e: { data?: unknown }) => e);
    assert.ok(refused && isOutputExists(refused.data) && refused.data.writer === 'merge' && refused.data.resumable === false, JSON.stringify(refused));
    const replaced = await s.conn.sendRequest(MergeRequest.type, { uri, adapterDir: trainedRun.adapterDir, outDir: merged, overwrite: true });
    assert.equal(replaced.outDir, merged);

    const mine = userFolder(ws.dir, 'mine');
    const before = tree(mine);
    const foreign = await s.conn.sendRequest(ExportRequest.type, { adapterDir: trainedRun.adapterDir, format: 'peft-lora', outDir: mine, overwrite: true })
      .then(() => null, (e: { message: string; data?: { kind?: string; why?: string } }) => e);
    assert.ok(foreign, 'refused');
    assert.deepEqual([foreign.data?.kind, foreign.data?.why], ['output-refused', 'foreign'], JSON.stringify(foreign));
    assert.match(foreign.message, /mine: is not empty and was not written by LoRA-XS/);
    assert.deepEqual(tree(mine), before);
  });
});

// ---------------------------------------------------------------------------------------------------
// Read-only and full disks on small tmpfs mounts.

/** Mounts a tmpfs with `options` (and `ro` after, when asked); undefined (and the test skipped) when refused outside CI. */
function mountTmpfs(t: TestContext, options: string, readOnly = false): string | undefined {
  const dir = tempDir('loraxs-mnt-');
  const refused = (what: string, r: ReturnType<typeof spawnSync>): undefined => {
    const why = `${what} refused (${r.error?.message ?? (String(r.stderr).trim() || `exit ${r.status}`)}); this test needs root and tmpfs`;
    if (process.env.CI === 'true') assert.fail(why);
    t.skip(why);
    return undefined;
  };
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir], { encoding: 'utf8' });
  if (m.status !== 0) return refused(`mount -t tmpfs -o ${options}`, m);
  if (readOnly) {
    const ro = spawnSync('mount', ['-o', 'remount,ro', dir], { encoding: 'utf8' });
    if (ro.status !== 0) {
      unmount(dir);
      return refused('mount -o remount,ro', ro);
    }
  }
  return dir;
}

function unmount(dir: string): void {
  const r = spawnSync('umount', [dir], { encoding: 'utf8' });
  assert.equal(r.status, 0, `umount ${dir}: ${r.stderr}`);
}

test('a read-only output is refused before the model loads: one line, exit 73, for merge, export and train', (t) => {
  const ws = workspace();
  const mnt = mountTmpfs(t, 'size=4m', true);
  if (!mnt) return;
  try {
    const roConfig = path.join(ws.dir, 'ro.loraxs.yaml');
    fs.writeFileSync(roConfig, CONFIG.replace('output: out', `output: ${path.join(mnt, 'run')}`));
    const runs: Array<[string, Run]> = [
      ['merge', loraxs(['merge', ws.config, '--adapter', ws.adapter, '--out', path.join(mnt, 'merged')], ws.dir)],
      ['export', loraxs(['export', '--adapter', ws.adapter, '--format', 'peft-lora', '--out', path.join(mnt, 'sub', 'peft')], ws.dir)],
      ['train', loraxs(['train', roConfig], ws.dir)],
    ];
    for (const [what, r] of runs) {
      assertCleanError(r, 73, /: the file system is read-only at .* \(EROFS\); choose a location on a writable disk/, what);
      // Refused before anything was loaded: no progress, no log line, only the error.
      assert.deepEqual(ownLines(r.stderr).length, 1, `${what}: the error is all it printed\n${r.stderr}`);
    }
    assert.deepEqual(fs.readdirSync(mnt), []);
  } finally {
    unmount(mnt);
  }
});

test('a full disk: refused by the pre-flight (exit 74), and a disk that fills up during merge or export leaves no temporary folder (exit 74)', (t) => {
  const ws = workspace();
  // 64 KiB: less than the merged model (~100 KB), found from the safetensors headers before loading.
  const small = mountTmpfs(t, 'size=64k');
  if (!small) return;
  try {
    const r = loraxs(['merge', ws.config, '--adapter', ws.adapter, '--out', path.join(small, 'merged')], ws.dir);
    assertCleanError(r, 74, /merged: not enough free space: this merge writes about .* free \(ENOSPC\)/, 'merge onto a small disk');
    assert.equal(ownLines(r.stderr).length, 1, r.stderr);
    assert.deepEqual(fs.readdirSync(small), []);
  } finally {
    unmount(small);
  }
  // Room for the bytes but only 4 inodes (the root, the temporary folder, two files): the disk is full
  // while the merge writes its files, after the pre-flight passed.
  const inodes = mountTmpfs(t, 'size=8m,nr_inodes=4');
  if (!inodes) return;
  try {
    const cases: Array<[string, string[]]> = [
      ['merge', ['merge', ws.config, '--adapter', ws.adapter, '--out', path.join(inodes, 'merged')]],
      ['export', ['export', '--adapter', ws.adapter, '--format', 'loraxs-factors', '--out', path.join(inodes, 'exported')]],
    ];
    for (const [what, args] of cases) {
      const r = loraxs(args, ws.dir);
      assertCleanError(r, 74, /: no space left on the device \(ENOSPC\); free some space/, `${what} onto a disk that fills up`);
      assert.deepEqual(fs.readdirSync(inodes), [], `${what}: no temporary folder, no partial output`);
    }
  } finally {
    unmount(inodes);
  }
  assert.deepEqual(leftovers(ws.dir), []);
});

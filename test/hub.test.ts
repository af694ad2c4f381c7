/**
 * The Hugging Face hub client (sidecar/hub/) against a stand-in of the hub's HTTP API on 127.0.0.1
 * (test/fixtures/hub/stand_in_hub.ts) serving committed fixtures: the tiny BERT and Qwen2 checkpoints of
 * test/fixtures/tiny and the tokenizer, generation and chat-template files of test/fixtures/hub. Checks the
 * cache layout Python's huggingface_hub uses, offline use, resume after a dropped connection and after a
 * cancel, sha256 checks, the one-line errors, where the token is sent, and headers-only mode.
 *
 * The cross-check with Python's huggingface_hub (both fill an HF_HOME, each reads the other's offline) runs
 * when `python3` (or LORAXS_HUB_PYTHON) can import huggingface_hub; it is skipped with a message otherwise.
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { encodeSafetensors, readSafetensorsHeader, readTensorBytes, type SafetensorsHeader } from '../sidecar/io/safetensors';
import { readHubEnv, type HubEnv } from '../sidecar/hub/hub_env';
import { parseModelRef, repoIdProblem } from '../sidecar/hub/repo_id';
import { resolveHubModel, type HubProgress } from '../sidecar/hub/resolve_model';
import { HubError } from '../sidecar/hub/hub_errors';
import { fixtures, repoRoot, tempDir } from './paths';
import {
  GOOD_TOKEN, NO_ACCESS_TOKEN, StandInHub, commitOf, etagOf, sha256, type StandInRepo,
} from './fixtures/hub/stand_in_hub';

const BERT = 'tiny-org/tiny-bert';
const SHARDED = 'tiny-org/tiny-qwen2-sharded';
const BIN_ONLY = 'tiny-org/bin-only';
const PRIVATE = 'tiny-org/private-bert';
const GATED = 'tiny-org/gated-bert';

const root = tempDir('loraxs-hub-');
const read = (...p: string[]): Buffer => fs.readFileSync(path.join(fixtures, ...p));

/** The Qwen2 fixture split into two shards, the second in a subfolder, with its index. */
function shardedQwen(): Map<string, Buffer> {
  const src = path.join(root, 'qwen2.safetensors');
  fs.writeFileSync(src, read('tiny', 'qwen2', 'causal-lm', 'model.safetensors'));
  const h = readSafetensorsHeader(src);
  const names = [...h.tensors.keys()];
  const half = Math.ceil(names.length / 2);
  const shardNames = ['model-00001-of-00002.safetensors', 'shards/model-00002-of-00002.safetensors'];
  const weightMap: Record<string, string> = {};
  const shards = [names.slice(0, half), names.slice(half)].map((group, i) => {
    for (const n of group) weightMap[n] = shardNames[i];
    return encodeSafetensors(group.map((n) => {
      const e = h.tensors.get(n)!;
      return { name: n, dtype: e.dtype, shape: e.shape, data: readTensorBytes(h, n) };
    }), { format: 'pt' });
  });
  const index = { metadata: { total_size: h.fileSize - h.dataStart }, weight_map: weightMap };
  return new Map<string, Buffer>([
    ['config.json', read('tiny', 'qwen2', 'causal-lm', 'config.json')],
    ['model.safetensors.index.json', Buffer.from(JSON.stringify(index, null, 2))],
    [shardNames[0], shards[0]],
    [shardNames[1], shards[1]],
    ['tokenizer.json', read('hub', 'decoder', 'tokenizer.json')],
    ['tokenizer_config.json', read('hub', 'decoder', 'tokenizer_config.json')],
    ['generation_config.json', read('hub', 'decoder', 'generation_config.json')],
    ['chat_template.jinja', read('hub', 'decoder', 'chat_template.jinja')],
  ]);
}

function repos(): Map<string, StandInRepo> {
  const bert = new Map<string, Buffer>([
    ['config.json', read('tiny', 'bert', 'seq-cls', 'config.json')],
    ['model.safetensors', read('tiny', 'bert', 'seq-cls', 'model.safetensors')],
    ['tokenizer.json', read('hub', 'encoder', 'tokenizer.json')],
    ['tokenizer_config.json', read('hub', 'encoder', 'tokenizer_config.json')],
  ]);
  return new Map<string, StandInRepo>([
    [BERT, { files: bert }],
    [SHARDED, { files: shardedQwen() }],
    [BIN_ONLY, { files: new Map([['config.json', bert.get('config.json')!], ['pytorch_model.bin', Buffer.from('PK\u0003\u0004 not really a pickle')]]) }],
    [PRIVATE, { files: bert, access: 'private' }],
    [GATED, { files: bert, access: 'gated' }],
  ]);
}

const REPOS = repos();
let hub: StandInHub;
before(async () => { hub = await StandInHub.start(REPOS); });
after(() => hub.stop());

let homes = 0;
/** A fresh HF_HOME and the environment pointing at the stand-in (or `endpoint`). */
function freshEnv(extra: Record<string, string> = {}, endpoint = hub.hubUrl): { home: string; env: HubEnv } {
  const home = path.join(root, `home-${++homes}`);
  fs.mkdirSync(home);
  return { home, env: readHubEnv({ HF_HOME: home, HF_ENDPOINT: endpoint, ...extra }) };
}

const repoDir = (home: string, id: string): string => path.join(home, 'hub', `models--${id.replace('/', '--')}`);
const fast = { retryDelayMs: 0 };

function assertOneLine(e: unknown, code: string, ...mentions: string[]): true {
  assert.ok(e instanceof HubError, `expected a HubError, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  assert.ok(!e.message.includes('\n'), `not one line: ${e.message}`);
  for (const m of mentions) assert.ok(e.message.includes(m), `'${m}' missing from: ${e.message}`);
  return true;
}

/** Every entry under `dir`: `rel/`, `rel -> link`, or `rel sha256`. */
function treeOf(dir: string, skip: (rel: string) => boolean = () => false): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (skip(r)) continue;
      const p = path.join(d, e.name);
      if (e.isSymbolicLink()) out.push(`${r} -> ${fs.readlinkSync(p)}`);
      else if (e.isDirectory()) { out.push(`${r}/`); walk(p, r); }
      else out.push(`${r} ${sha256(fs.readFileSync(p))}`);
    }
  };
  walk(dir, '');
  return out;
}

// ---------------------------------------------------------------------------------------------------------

test('hub_env: HF_HOME, HF_HUB_CACHE, HF_ASSETS_CACHE, HF_HUB_OFFLINE, HF_TOKEN, the token file and HF_ENDPOINT', () => {
  const home = path.join(root, 'env-home');
  fs.mkdirSync(home);
  const d = readHubEnv({ HOME: '/home/u' });
  assert.equal(d.hfHome, '/home/u/.cache/huggingface');
  assert.equal(d.hubCache, '/home/u/.cache/huggingface/hub');
  assert.equal(d.assetsCache, '/home/u/.cache/huggingface/assets');
  assert.equal(d.endpoint, 'https://huggingface.co');
  assert.equal(d.offline, false);
  assert.equal(readHubEnv({ HOME: '/home/u', XDG_CACHE_HOME: '/x' }).hfHome, '/x/huggingface');
  const e = readHubEnv({ HF_HOME: home, HF_ENDPOINT: 'http://mirror.example/', HF_HUB_OFFLINE: 'yes' });
  assert.equal(e.hubCache, path.join(home, 'hub'));
  assert.equal(e.endpoint, 'http://mirror.example');
  assert.equal(e.offline, true);
  assert.equal(readHubEnv({ HF_HOME: home, HF_HUB_OFFLINE: '0' }).offline, false);
  assert.equal(readHubEnv({ HF_HOME: home, HF_HUB_CACHE: '/c' }).hubCache, '/c');
  assert.equal(readHubEnv({ HF_HOME: home }).token, undefined);
  fs.writeFileSync(path.join(home, 'token'), 'hf_from_file\n');
  const t = readHubEnv({ HF_HOME: home });
  assert.equal(t.token, 'hf_from_file');
  assert.equal(t.tokenSource, path.join(home, 'token'));
  const v = readHubEnv({ HF_HOME: home, HF_TOKEN: ' hf_env ' });
  assert.equal(v.token, 'hf_env');
  assert.equal(v.tokenSource, 'HF_TOKEN');
});

test('repo ids: an existing path wins, org/name is a hub id, bad ids are explained', () => {
  const base = path.join(root, 'ids');
  fs.mkdirSync(path.join(base, 'org', 'local'), { recursive: true });
  assert.deepEqual(parseModelRef('Qwen/Qwen2-0.5B', base), { kind: 'hub', id: 'Qwen/Qwen2-0.5B' });
  assert.deepEqual(parseModelRef('org/local', base), { kind: 'folder', path: path.join(base, 'org', 'local') });
  assert.equal(parseModelRef('./org/other', base).kind, 'folder');
  assert.equal(parseModelRef('gpt2', base).kind, 'folder');
  assert.equal(parseModelRef('/abs/org/name', base).kind, 'folder');
  assert.equal(repoIdProblem('a/b'), undefined);
  assert.match(repoIdProblem('a/b/c')!, /exactly one/);
  assert.match(repoIdProblem('a--x/b')!, /--/);
  assert.match(repoIdProblem('a/b c')!, /letters, digits/);
});

test('resolve downloads into HF_HOME in huggingface_hub\'s layout: blobs, relative links, refs, .no_exist', async () => {
  const { home, env } = freshEnv();
  const events: HubProgress[] = [];
  const r = await resolveHubModel(BERT, { env, onProgress: (p) => events.push(p), ...fast });
  const commit = commitOf(BERT);
  const dir = repoDir(home, BERT);
  assert.equal(r.commit, commit);
  assert.equal(r.dir, path.join(dir, 'snapshots', commit));
  assert.equal(r.fromCache, false);
  assert.equal(fs.readFileSync(path.join(dir, 'refs', 'main'), 'utf8'), commit);
  const files = REPOS.get(BERT)!.files;
  assert.deepEqual(r.files, [...files.keys()].sort());
  for (const [f, data] of files) {
    const pointer = path.join(r.dir, f);
    assert.ok(fs.lstatSync(pointer).isSymbolicLink(), `${f} is a link`);
    assert.equal(fs.readlinkSync(pointer), `../../blobs/${etagOf(f, data)}`);
    assert.ok(fs.readFileSync(pointer).equals(data), `${f} content`);
  }
  assert.deepEqual(fs.readdirSync(path.join(dir, 'blobs')).sort(), [...files].map(([f, d]) => etagOf(f, d)).sort());
  const absent = ['special_tokens_map.json', 'generation_config.json', 'chat_template.jinja', 'chat_template.json'];
  assert.deepEqual(r.missing, absent);
  assert.deepEqual(fs.readdirSync(path.join(dir, '.no_exist', commit)).sort(), [...absent].sort());
  assert.equal(fs.statSync(path.join(dir, '.no_exist', commit, 'chat_template.jinja')).size, 0);
  assert.equal(readSafetensorsHeader(path.join(r.dir, 'model.safetensors')).tensors.size,
    readSafetensorsHeader(path.join(fixtures, 'tiny', 'bert', 'seq-cls', 'model.safetensors')).tensors.size);
  const total = [...files.values()].reduce((s, d) => s + d.length, 0);
  const last = events[events.length - 1];
  assert.deepEqual([last.phase, last.received, last.total], ['done', total, total]);
  const downloads = events.filter((e) => e.phase === 'download').map((e) => e.received);
  assert.ok(downloads.length > 0 && downloads.every((x, i) => i === 0 || x >= downloads[i - 1]), 'progress never goes back');
  assert.equal(fs.existsSync(path.join(home, 'hub', '.locks', `models--${BERT.replace('/', '--')}`)), true);
  assert.deepEqual(fs.readdirSync(path.join(home, 'hub', '.locks', `models--${BERT.replace('/', '--')}`)), [], 'locks released');
});

test('sharded checkpoint: index and shards (one in a subfolder: one more ../), model.safetensors marked absent', async () => {
  const { home, env } = freshEnv();
  const r = await resolveHubModel(SHARDED, { env, ...fast });
  const commit = commitOf(SHARDED);
  const files = REPOS.get(SHARDED)!.files;
  const sub = 'shards/model-00002-of-00002.safetensors';
  assert.equal(fs.readlinkSync(path.join(r.dir, 'shards', 'model-00002-of-00002.safetensors')), `../../../blobs/${etagOf(sub, files.get(sub)!)}`);
  assert.equal(fs.readlinkSync(path.join(r.dir, 'chat_template.jinja')), `../../blobs/${etagOf('chat_template.jinja', files.get('chat_template.jinja')!)}`);
  assert.deepEqual(r.weightFiles, ['model-00001-of-00002.safetensors', sub]);
  assert.deepEqual(r.files, [...files.keys()].sort());
  assert.deepEqual(r.missing, ['special_tokens_map.json', 'chat_template.json']);
  assert.ok(fs.existsSync(path.join(repoDir(home, SHARDED), '.no_exist', commit, 'model.safetensors')));
  assert.ok(!fs.existsSync(path.join(repoDir(home, SHARDED), '.no_exist', commit, 'tokenizer.model')), 'tokenizer.model is not asked for when tokenizer.json exists');
});

test('a second resolve needs the hub for one HEAD; offline or with the hub gone it works from the cache', async () => {
  const own = await StandInHub.start(REPOS);
  const { home, env } = freshEnv({}, own.hubUrl);
  const first = await resolveHubModel(BERT, { env, ...fast });
  const before = own.log.length;
  const again = await resolveHubModel(BERT, { env, ...fast });
  assert.equal(again.dir, first.dir);
  assert.deepEqual(own.log.slice(before).map((l) => `${l.server} ${l.method} ${l.path}`), [`hub HEAD /${BERT}/resolve/main/config.json`]);
  await own.stop();
  const offline = await resolveHubModel(BERT, { env: readHubEnv({ HF_HOME: home, HF_ENDPOINT: own.hubUrl, HF_HUB_OFFLINE: '1' }) });
  assert.equal(offline.dir, first.dir);
  assert.equal(offline.fromCache, true);
  assert.deepEqual(offline.files, first.files);
  const unreachable = await resolveHubModel(BERT, { env, ...fast });
  assert.equal(unreachable.dir, first.dir);
  assert.match(unreachable.warning ?? '', /cannot reach .*using the cached copy/);
  const byCommit = await resolveHubModel(BERT, { env, revision: first.commit });
  assert.equal(byCommit.dir, first.dir);
});

test('a connection dropped mid-file is resumed with a Range request; the blob matches its sha256', async () => {
  const { home, env } = freshEnv();
  const data = REPOS.get(BERT)!.files.get('model.safetensors')!;
  const sha = sha256(data);
  hub.dropOnce.set(sha, 40_000);
  const before = hub.log.length;
  const r = await resolveHubModel(BERT, { env, ...fast });
  const cdn = hub.log.slice(before).filter((l) => l.server === 'cdn');
  assert.deepEqual(cdn.map((l) => [l.range, l.status, l.bytes]), [[undefined, 200, 40_000], ['bytes=40000-', 206, data.length - 40_000]]);
  assert.equal(sha256(fs.readFileSync(path.join(repoDir(home, BERT), 'blobs', sha))), sha);
  assert.ok(fs.readFileSync(path.join(r.dir, 'model.safetensors')).equals(data));
});

test('a cancelled download keeps blobs/<etag>.incomplete and the next run resumes from it', async () => {
  const { home, env } = freshEnv();
  const data = REPOS.get(BERT)!.files.get('model.safetensors')!;
  const sha = sha256(data);
  hub.stallOnce.set(sha, 30_000);
  const ac = new AbortController();
  await assert.rejects(resolveHubModel(BERT, {
    env, signal: ac.signal, ...fast,
    onProgress: (p) => { if (p.file === 'model.safetensors' && p.phase === 'download' && p.received > 0) ac.abort(); },
  }), (e) => assertOneLine(e, 'cancelled', 'model.safetensors', BERT, 'resumes'));
  const incomplete = path.join(repoDir(home, BERT), 'blobs', `${sha}.incomplete`);
  const kept = fs.statSync(incomplete).size;
  assert.ok(kept > 0 && kept <= 30_000, `kept ${kept} bytes`);
  assert.ok(!fs.existsSync(path.join(repoDir(home, BERT), 'blobs', sha)));
  const before = hub.log.length;
  const r = await resolveHubModel(BERT, { env, ...fast });
  const cdn = hub.log.slice(before).filter((l) => l.server === 'cdn');
  assert.deepEqual(cdn.map((l) => [l.range, l.status, l.bytes]), [[`bytes=${kept}-`, 206, data.length - kept]]);
  assert.ok(fs.readFileSync(path.join(r.dir, 'model.safetensors')).equals(data));
  assert.ok(!fs.existsSync(incomplete));
});

test('a corrupted download is detected: one-line error, nothing kept or linked; the next run recovers', async () => {
  const { home, env } = freshEnv();
  const data = REPOS.get(BERT)!.files.get('model.safetensors')!;
  const sha = sha256(data);
  hub.corrupt.add(sha);
  try {
    await assert.rejects(resolveHubModel(BERT, { env, ...fast }), (e) => assertOneLine(e, 'integrity', 'model.safetensors', BERT, 'sha256', 'run again'));
  } finally {
    hub.corrupt.delete(sha);
  }
  const blobs = path.join(repoDir(home, BERT), 'blobs');
  assert.ok(!fs.existsSync(path.join(blobs, sha)) && !fs.existsSync(path.join(blobs, `${sha}.incomplete`)));
  assert.ok(!fs.existsSync(path.join(repoDir(home, BERT), 'snapshots', commitOf(BERT), 'model.safetensors')));
  const r = await resolveHubModel(BERT, { env, ...fast });
  assert.ok(fs.readFileSync(path.join(r.dir, 'model.safetensors')).equals(data));
});

test('errors are one line naming the id and the fix: missing, private, gated, token refused, revision, .bin-only', async () => {
  const anon = freshEnv().env;
  await assert.rejects(resolveHubModel('tiny-org/nope', { env: anon }), (e) => assertOneLine(e, 'repo-not-found', 'tiny-org/nope', 'HF_TOKEN'));
  await assert.rejects(resolveHubModel(PRIVATE, { env: anon }), (e) => assertOneLine(e, 'repo-not-found', PRIVATE, 'private', 'HF_TOKEN'));
  await assert.rejects(resolveHubModel(GATED, { env: anon }), (e) => assertOneLine(e, 'gated', GATED, 'accept its conditions', `${hub.hubUrl}/${GATED}`));
  const noAccess = freshEnv({ HF_TOKEN: NO_ACCESS_TOKEN }).env;
  await assert.rejects(resolveHubModel(GATED, { env: noAccess }), (e) => assertOneLine(e, 'gated', GATED, 'HF_TOKEN', 'request'));
  await assert.rejects(resolveHubModel(PRIVATE, { env: noAccess }), (e) => assertOneLine(e, 'repo-not-found', PRIVATE, 'HF_TOKEN', 'access'));
  await assert.rejects(resolveHubModel(BERT, { env: freshEnv({ HF_TOKEN: 'hf_wrong' }).env }), (e) => assertOneLine(e, 'token-refused', BERT, 'HF_TOKEN', 'settings/tokens'));
  await assert.rejects(resolveHubModel(BERT, { env: anon, revision: 'v9' }), (e) => assertOneLine(e, 'revision-not-found', BERT, 'v9'));
  await assert.rejects(resolveHubModel(BIN_ONLY, { env: anon }), (e) => assertOneLine(e, 'bin-only', BIN_ONLY, 'pytorch_model.bin', 'safetensors'));
  await assert.rejects(resolveHubModel('a/b/c', { env: anon }), /not a valid Hugging Face model id/);
});

test('offline and not cached, or the hub unreachable and not cached: one line saying so', async () => {
  const off = freshEnv({ HF_HUB_OFFLINE: '1' }).env;
  await assert.rejects(resolveHubModel(BERT, { env: off }), (e) => assertOneLine(e, 'offline-not-cached', BERT, 'HF_HUB_OFFLINE', off.hubCache));
  const closed = http.createServer();
  await new Promise<void>((res) => closed.listen(0, '127.0.0.1', () => res()));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((res) => closed.close(() => res()));
  await assert.rejects(resolveHubModel(BERT, { env: freshEnv({}, `http://127.0.0.1:${port}`).env }),
    (e) => assertOneLine(e, 'unreachable-not-cached', BERT, `127.0.0.1:${port}`, 'not in the Hugging Face cache'));
});

test('the token (HF_TOKEN or $HF_HOME/token) goes to the hub, never to the host a redirect leads to', async () => {
  for (const how of ['env', 'file'] as const) {
    const { home, env } = how === 'env' ? freshEnv({ HF_TOKEN: GOOD_TOKEN }) : (() => {
      const h = path.join(root, `home-${++homes}`);
      fs.mkdirSync(h);
      fs.writeFileSync(path.join(h, 'token'), `${GOOD_TOKEN}\n`);
      return { home: h, env: readHubEnv({ HF_HOME: h, HF_ENDPOINT: hub.hubUrl }) };
    })();
    const before = hub.log.length;
    const r = await resolveHubModel(GATED, { env, ...fast });
    assert.ok(r.dir.startsWith(home));
    const log = hub.log.slice(before);
    const toHub = log.filter((l) => l.server === 'hub');
    const toCdn = log.filter((l) => l.server === 'cdn');
    assert.ok(toHub.length >= 2 && toCdn.length === 1, JSON.stringify(log));
    assert.ok(toHub.every((l) => l.authorization === `Bearer ${GOOD_TOKEN}`), 'every hub request carries the token');
    assert.ok(toCdn.every((l) => l.authorization === undefined), 'no token to the CDN on the other port');
  }
});

test('headers-only: config.json, the index and the safetensors headers, no weight byte; then offline from the cache', async () => {
  const { home, env } = freshEnv();
  const files = REPOS.get(SHARDED)!.files;
  const before = hub.log.length;
  const r = await resolveHubModel(SHARDED, { env, headersOnly: true, ...fast });
  const shards = ['model-00001-of-00002.safetensors', 'shards/model-00002-of-00002.safetensors'];
  const cdn = hub.log.slice(before).filter((l) => l.server === 'cdn');
  const headerBytes = shards.map((f) => 8 + Number(files.get(f)!.readBigUInt64LE(0)));
  assert.equal(cdn.length, 4);
  assert.equal(hub.cdnBytes() - hub.log.slice(0, before).filter((l) => l.server === 'cdn').reduce((s, l) => s + l.bytes, 0), headerBytes[0] + headerBytes[1]);
  assert.deepEqual(cdn.map((l) => l.range), ['bytes=0-7', `bytes=8-${headerBytes[0] - 1}`, 'bytes=0-7', `bytes=8-${headerBytes[1] - 1}`]);
  assert.deepEqual(r.files, ['config.json', 'model.safetensors.index.json']);
  const expectHeaders = shards.map((f) => {
    const p = path.join(root, `real-${path.basename(f)}`);
    fs.writeFileSync(p, files.get(f)!);
    return readSafetensorsHeader(p);
  });
  const shape = (h: SafetensorsHeader) => [...h.tensors.values()].map((t) => [t.name, t.dtype, t.shape.join('x'), t.begin, t.end].join(' '));
  assert.deepEqual(r.headers!.map(shape), expectHeaders.map(shape));
  assert.deepEqual(r.headers!.map((h) => h.fileSize), expectHeaders.map((h) => h.fileSize));
  const blobs = fs.readdirSync(path.join(repoDir(home, SHARDED), 'blobs'));
  assert.equal(blobs.length, 2, `only config.json and the index are blobs: ${blobs}`);
  assert.ok(fs.existsSync(path.join(home, 'assets', 'loraxs', 'tiny-org--tiny-qwen2-sharded', 'safetensors-headers', commitOf(SHARDED), 'shards', 'model-00002-of-00002.safetensors.json')));
  const offline = readHubEnv({ HF_HOME: home, HF_ENDPOINT: hub.hubUrl, HF_HUB_OFFLINE: '1' });
  const again = await resolveHubModel(SHARDED, { env: offline, headersOnly: true });
  assert.deepEqual(again.headers!.map(shape), expectHeaders.map(shape));
  await assert.rejects(resolveHubModel(SHARDED, { env: offline }), (e) => assertOneLine(e, 'offline-not-cached', SHARDED, 'model-00001-of-00002.safetensors'));
});

// ---------------------------------------------------------------------------------------------------------
// Cross-check with Python's huggingface_hub

const python = process.env.LORAXS_HUB_PYTHON ?? 'python3';
const probe = spawnSync(python, ['-c', 'import huggingface_hub; print(huggingface_hub.__version__)'], { encoding: 'utf8' });
const skipPython = probe.status === 0 ? false : `skipped: ${python} cannot import huggingface_hub (pip install huggingface_hub; or set LORAXS_HUB_PYTHON)`;

/** Runs hub_cache_check.py without blocking the event loop (the stand-in hub answers from this process). */
interface PythonOut {
  snapshot: string;
  files: Record<string, string | null>;
  scan?: Array<[string, string, string[], string[]]>;
  scan_warnings?: string[];
}

async function runPython(mode: string, home: string, endpoint: string, id: string, files: string[], offline = false): Promise<PythonOut> {
  const env: Record<string, string | undefined> = {
    ...process.env, HF_HOME: home, HF_ENDPOINT: endpoint, HF_HUB_OFFLINE: offline ? '1' : '0', HF_TOKEN: undefined, HF_HUB_CACHE: undefined,
    HF_HUB_DISABLE_TELEMETRY: '1', HF_HUB_DISABLE_UPDATE_CHECK: '1', HF_HUB_DISABLE_PROGRESS_BARS: '1', NO_PROXY: '127.0.0.1,localhost', no_proxy: '127.0.0.1,localhost',
  };
  const child = spawn(python, [path.join(repoRoot, 'test', 'reference', 'hub_cache_check.py'), mode, id, ...files], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  const status = await new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  assert.equal(status, 0, `hub_cache_check.py ${mode} failed:\n${stdout}\n${stderr.slice(-3000)}`);
  return JSON.parse(stdout.trim().split('\n').pop()!);
}

test('Python huggingface_hub and ours fill identical caches, and each works offline from the other\'s', { skip: skipPython }, async () => {
  const own = await StandInHub.start(REPOS);
  const ours = freshEnv({}, own.hubUrl);
  const py = freshEnv({}, own.hubUrl);
  const pySnap = freshEnv({}, own.hubUrl);
  const asked: Record<string, string[]> = {};
  try {
    for (const id of [BERT, SHARDED]) {
      const r = await resolveHubModel(id, { env: ours.env, ...fast });
      const noExist = path.join(repoDir(ours.home, id), '.no_exist', r.commit);
      asked[id] = [...r.files, ...fs.readdirSync(noExist)];
      await runPython('download', py.home, own.hubUrl, id, asked[id]);
      assert.deepEqual(treeOf(repoDir(py.home, id)), treeOf(repoDir(ours.home, id)), `${id}: hf_hub_download's tree differs from ours`);
      const snap = await runPython('snapshot', pySnap.home, own.hubUrl, id, r.files);
      assert.equal(snap.snapshot, path.join(repoDir(pySnap.home, id), 'snapshots', r.commit));
      const core = (rel: string): boolean => rel === 'trees' || rel.startsWith('trees/') || rel === '.no_exist' || rel.startsWith('.no_exist/');
      assert.deepEqual(treeOf(repoDir(pySnap.home, id), core), treeOf(repoDir(ours.home, id), core), `${id}: snapshot_download's tree differs from ours`);
    }
  } finally {
    await own.stop();
  }
  for (const id of [BERT, SHARDED]) {
    const files = REPOS.get(id)!.files;
    const out = await runPython('offline', ours.home, own.hubUrl, id, asked[id], true);
    for (const f of asked[id]) assert.equal(out.files[f], files.has(f) ? sha256(files.get(f)!) : null, `${id}/${f} read by Python from our cache`);
    assert.equal(out.snapshot, path.join(repoDir(ours.home, id), 'snapshots', commitOf(id)));
    assert.deepEqual(out.scan_warnings, [], 'hf cache scan finds nothing wrong in our cache');
    assert.deepEqual(out.scan!.find((s) => s[0] === id), [id, commitOf(id), ['main'], [...files.keys()].map((f) => path.basename(f)).sort()]);
    for (const home of [py.home, pySnap.home]) {
      const r = await resolveHubModel(id, { env: readHubEnv({ HF_HOME: home, HF_ENDPOINT: own.hubUrl, HF_HUB_OFFLINE: '1' }) });
      assert.equal(r.dir, path.join(repoDir(home, id), 'snapshots', commitOf(id)));
      for (const [f, data] of files) assert.ok(fs.readFileSync(path.join(r.dir, f)).equals(data), `${id}/${f} read by us from Python's cache`);
    }
  }
});

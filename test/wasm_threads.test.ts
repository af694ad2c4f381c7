/**
 * Multi-threaded wasm (sidecar/backend/wasm_threads.ts): the thread count a user asks for, the backend set-up
 * using it, and a process on threaded wasm ending by itself (the pool's workers must not keep it alive).
 * Numbers on the threaded backend are checked by every other test (they run on the default backend,
 * which is threaded on a machine with two or more cores) and by wasm_matmul.test.ts against tfjs's cpu.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { initBackend } from '../sidecar/backend/choice';
import * as fs from 'node:fs';
import { MAX_WASM_THREADS, THREADED_FACTORY_FILE, THREADED_WORKER_FILE, threadedWasmUnavailable, wasmThreadsWanted } from '../sidecar/backend/wasm_threads';
import { wasmDirectory } from '../sidecar/backend/choice';
import { repoRoot } from './paths';

test('LORAXS_WASM_THREADS sets the thread count, capped at the worker pool; bad values are refused by name', () => {
  assert.equal(wasmThreadsWanted({ LORAXS_WASM_THREADS: '1' }), 1);
  assert.equal(wasmThreadsWanted({ LORAXS_WASM_THREADS: '3' }), 3);
  assert.equal(wasmThreadsWanted({ LORAXS_WASM_THREADS: '100' }), MAX_WASM_THREADS);
  assert.equal(wasmThreadsWanted({}), Math.min(os.cpus().length, MAX_WASM_THREADS));
  for (const bad of ['0', '-2', '1.5', 'two']) assert.throws(() => wasmThreadsWanted({ LORAXS_WASM_THREADS: bad }), /LORAXS_WASM_THREADS must be a positive integer/);
});

test('the wasm backend runs with the threads wanted', async () => {
  const info = await initBackend();
  if (info.name !== 'wasm') return;
  assert.equal(info.threads, wasmThreadsWanted(), JSON.stringify(info.attempts));
});

/** `loraxs doctor --json` in a child process with the given thread count; it must end on its own. */
function doctor(threads: string): { threads: number; gflops: number; attempts: Array<{ candidate: string; ok: boolean }> } {
  const r = spawnSync(process.execPath, [path.join(repoRoot, 'bin', 'loraxs.js'), 'doctor', '--json'], {
    env: { ...process.env, LORAXS_WASM_THREADS: threads, LORAXS_BACKEND: 'wasm' }, encoding: 'utf8', timeout: 120000,
  });
  assert.equal(r.signal, null, `doctor with ${threads} thread(s) did not end by itself (killed by ${r.signal}): ${r.stderr}`);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test('a CLI process on 2-thread wasm gets its 2 threads and exits by itself; with 1 thread it runs single-threaded', () => {
  const two = doctor('2');
  assert.equal(two.threads, 2, JSON.stringify(two.attempts));
  assert.ok(two.attempts.some((a) => a.ok && a.candidate === 'wasm (2 threads)'));
  assert.ok(two.gflops > 1, `${two.gflops} GFLOP/s`);
  const one = doctor('1');
  assert.equal(one.threads, 1);
  assert.ok(one.attempts.some((a) => a.ok && a.candidate === 'wasm'));
});

test('threaded wasm is offered only when its worker and factory scripts are beside the binaries', () => {
  const built = wasmDirectory();
  assert.equal(threadedWasmUnavailable(built), undefined, `the build copies the threaded build's files into ${built}`);
  const partial = fs.mkdtempSync(path.join(os.tmpdir(), 'loraxs-wasm-'));
  try {
    for (const f of fs.readdirSync(built)) if (f !== THREADED_WORKER_FILE) fs.copyFileSync(path.join(built, f), path.join(partial, f));
    assert.match(threadedWasmUnavailable(partial) ?? '', new RegExp(`${THREADED_WORKER_FILE.replace(/\./g, '\\.')} is missing`));
    fs.copyFileSync(path.join(built, THREADED_WORKER_FILE), path.join(partial, THREADED_WORKER_FILE));
    fs.rmSync(path.join(partial, THREADED_FACTORY_FILE));
    assert.match(threadedWasmUnavailable(partial) ?? '', /tfjs-backend-wasm-threaded-simd\.js is missing/);
  } finally {
    fs.rmSync(partial, { recursive: true, force: true });
  }
});

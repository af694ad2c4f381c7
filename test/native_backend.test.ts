/**
 * The native TensorFlow backend (sidecar/backend/native.ts, built by `npm run setup:native`): it registers
 * into the engine's one tfjs-core (no "already registered" lines, tensors of the engine's Tensor class,
 * gradients from the engine's registry), computes what the JS reference computes, loads in a worker thread
 * (where the sidecar's jobs run), and `loraxs doctor` names it with TensorFlow's version.
 *
 * Skipped when no native build is found, unless LORAXS_BACKEND=tensorflow or LORAXS_REQUIRE_NATIVE=1 (CI
 * after a successful set-up), where a missing build fails.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker, isMainThread, parentPort } from 'node:worker_threads';
import * as tf from '../sidecar/backend/tf';
import { initBackend } from '../sidecar/backend/choice';
import { findNativeInstalls, NATIVE_STAMP } from '../sidecar/backend/native';
import { repoRoot } from './paths';
import { startJob } from '../sidecar/engine/job_thread';
import { GOOD_CONFIG, makeWorkspace, sidecarBundle } from './lsp_harness';
import type { JobEvent } from '../sidecar/records';

/** The same small computation on whichever backend is current: a product, a softmax and a gradient. */
function probe(): { product: number[]; softmax: number[]; grad: number[] } {
  return tf.tidy(() => {
    const a = tf.tensor2d([[1, 2, 3], [4, 5, 6]]);
    const b = tf.tensor2d([[0.5, -1], [2, 0.25], [-3, 1.5]]);
    const product = tf.matMul(a, b);
    const softmax = tf.softmax(tf.tensor1d([1, 2, 3, 4]));
    const grad = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(tf.tanh(x), x)))(tf.tensor1d([-1, 0.5, 2]));
    return { product: Array.from(product.dataSync()), softmax: Array.from(softmax.dataSync()), grad: Array.from(grad.dataSync()) };
  });
}

if (!isMainThread) {
  // Worker side: the backend chosen inside a worker thread, as the sidecar's job worker does.
  (async () => {
    const info = await initBackend('tensorflow');
    parentPort!.postMessage({ name: info.name, tfVersion: info.tensorflowVersion, backend: tf.getBackend(), probe: probe() });
  })().catch((e) => parentPort!.postMessage({ error: String((e as Error).stack) }));
} else {
  const installs = findNativeInstalls();
  const required = process.env.LORAXS_BACKEND === 'tensorflow' || process.env.LORAXS_REQUIRE_NATIVE === '1';
  const skip = installs.length || required ? false : 'no native TensorFlow build (npm run setup:native)';

  const expected = {
    product: [1 * 0.5 + 2 * 2 + 3 * -3, 1 * -1 + 2 * 0.25 + 3 * 1.5, 4 * 0.5 + 5 * 2 + 6 * -3, 4 * -1 + 5 * 0.25 + 6 * 1.5],
    softmax: [1, 2, 3, 4].map((v) => Math.exp(v) / [1, 2, 3, 4].reduce((s, u) => s + Math.exp(u), 0)),
    grad: [-1, 0.5, 2].map((x) => Math.tanh(x) + x * (1 - Math.tanh(x) ** 2)),
  };
  const close = (got: number[], want: number[], what: string) => {
    assert.equal(got.length, want.length, what);
    got.forEach((g, i) => assert.ok(Math.abs(g - want[i]) < 1e-5, `${what}[${i}]: ${g} vs ${want[i]}`));
  };

  test('the native backend registers into the engine\'s tfjs-core and computes like the reference', { skip }, async () => {
    assert.ok(installs.length > 0, 'a native build is found (run npm run setup:native)');
    const warnings: string[] = [];
    const warn = console.warn;
    console.warn = (...a: unknown[]) => {
      warnings.push(a.map(String).join(' '));
    };
    let info;
    try {
      info = await initBackend('tensorflow');
    } finally {
      console.warn = warn;
    }
    assert.equal(info.name, 'tensorflow', JSON.stringify(info.attempts));
    assert.equal(tf.getBackend(), 'tensorflow');
    assert.match(info.tensorflowVersion ?? '', /^\d+\.\d+\.\d+/);
    assert.deepEqual(warnings.filter((w) => /already registered/i.test(w)), [], 'no kernel or backend is registered twice');
    // tfjs-node's kernels live in this engine's registry, and its tensors are this engine's Tensor class.
    assert.ok(tf.getKernelsForBackend('tensorflow').length > 100);
    const t = tf.tensor1d([1, 2, 3]);
    assert.ok(t instanceof tf.Tensor);
    assert.equal(tf.engine().backend, tf.findBackend('tensorflow'));
    t.dispose();
    const got = probe();
    close(got.product, expected.product, 'matMul');
    close(got.softmax, expected.softmax, 'softmax');
    close(got.grad, expected.grad, 'gradient of sum(tanh(x)·x)');
    const stamp = JSON.parse(fs.readFileSync(path.join(info.nativeDir!, NATIVE_STAMP), 'utf8')) as { tfVersion: string };
    assert.equal(info.tensorflowVersion, stamp.tfVersion, 'the version loaded is the one the set-up built against');
  });

  test('the native backend loads and computes in a worker thread', { skip }, async () => {
    const msg = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const w = new Worker(__filename, { env: { ...process.env, LORAXS_BACKEND: 'tensorflow' } });
      w.once('message', (m) => {
        resolve(m as Record<string, unknown>);
        void w.terminate();
      });
      w.once('error', reject);
    });
    assert.equal(msg.error, undefined, String(msg.error));
    assert.equal(msg.name, 'tensorflow');
    assert.equal(msg.backend, 'tensorflow');
    assert.match(String(msg.tfVersion), /^\d+\.\d+\.\d+/);
    const p = msg.probe as ReturnType<typeof probe>;
    close(p.product, expected.product, 'worker matMul');
    close(p.grad, expected.grad, 'worker gradient');
  });

  test('the sidecar\'s job worker trains on the native backend when LORAXS_BACKEND=tensorflow', { skip }, async () => {
    const ws = makeWorkspace();
    const { file } = ws.config('tiny', GOOD_CONFIG);
    const events: JobEvent[] = [];
    const lines: string[] = [];
    const saved = process.env.LORAXS_BACKEND;
    process.env.LORAXS_BACKEND = 'tensorflow'; // the worker thread inherits this process's environment
    let job;
    try {
      job = startJob({ kind: 'train', configFile: file, resume: false }, sidecarBundle, (e) => events.push(e), (l) => lines.push(l));
    } finally {
      process.env.LORAXS_BACKEND = saved;
    }
    const result = await job.done;
    assert.equal(result.kind, 'train');
    const logs = events.filter((e): e is Extract<JobEvent, { kind: 'log' }> => e.kind === 'log').map((e) => e.message);
    // Forced to tensorflow, the engine warns (and falls back to cpu) unless the native backend initialised.
    assert.deepEqual(logs.filter((m) => /fast backend failed|cpu backend/.test(m)), [], logs.join('\n'));
    assert.ok(events.some((e) => e.kind === 'step'), 'training steps ran');
    assert.deepEqual(lines.filter((l) => /already registered/i.test(l)), []);
  });

  test('loraxs doctor reports the native backend with TensorFlow\'s version and no "already registered" line', { skip }, () => {
    const r = spawnSync(process.execPath, [path.join(repoRoot, 'bin', 'loraxs.js'), 'doctor', '--json'],
      { encoding: 'utf8', env: { ...process.env, LORAXS_BACKEND: 'tensorflow' } });
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { backend: string; attempts: Array<{ candidate: string; ok: boolean; why: string }> };
    assert.equal(report.backend, 'tensorflow', r.stdout);
    const ok = report.attempts.find((a) => a.ok)!;
    assert.match(ok.why, /native TensorFlow \d+\.\d+\.\d+ loaded/);
    assert.doesNotMatch(r.stderr + r.stdout, /already registered/i);
    assert.doesNotMatch(r.stderr, /Hi, looks like you are running TensorFlow\.js in Node/);
  });

  test('a native build reached through a symlink loads one tfjs (no "already registered" line)', { skip }, () => {
    // Node names loaded files by their real path; the loader must match tfjs-node's files through the link.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loraxs-native-link-'));
    try {
      const link = path.join(dir, 'tfjs-node-cpu');
      fs.symlinkSync(fs.realpathSync(installs[0].dir), link);
      const r = spawnSync(process.execPath, [path.join(repoRoot, 'bin', 'loraxs.js'), 'doctor', '--json'],
        { encoding: 'utf8', env: { ...process.env, LORAXS_BACKEND: 'tensorflow', LORAXS_NATIVE_DIR: link } });
      assert.equal(r.status, 0, r.stderr);
      const report = JSON.parse(r.stdout) as { backend: string; attempts: Array<{ candidate: string; ok: boolean }> };
      assert.equal(report.backend, 'tensorflow', r.stdout);
      assert.ok(report.attempts.find((a) => a.ok)!.candidate.includes(link), 'the build was taken from the symlinked folder');
      assert.doesNotMatch(r.stderr + r.stdout, /already registered/i);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('LORAXS_BACKEND=webgpu is reported as not offered and a working backend is used', () => {
    const r = spawnSync(process.execPath, [path.join(repoRoot, 'bin', 'loraxs.js'), 'doctor', '--json'],
      { encoding: 'utf8', env: { ...process.env, LORAXS_BACKEND: 'webgpu' } });
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { backend: string; warning: string | null; attempts: Array<{ candidate: string; ok: boolean; why: string }> };
    assert.notEqual(report.backend, 'webgpu');
    assert.ok(['tensorflow', 'wasm'].includes(report.backend), report.backend);
    assert.match(report.warning ?? '', /WebGPU is not offered/);
    assert.match(report.attempts.find((a) => a.candidate === 'webgpu')!.why, /not bundled/);
  });
}

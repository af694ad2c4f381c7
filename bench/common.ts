/**
 * Shared pieces of the benchmark parts (bench/*_bench.ts): where files go, the part result file, the
 * machine description, timing, and a Python reference process driven line by line (one JSON request,
 * one JSON reply), so the engine and its reference run interleaved on the same inputs in one run.
 * Not shipped: bundled into dist/bench/ by bench/run.mjs.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** The repository root (run.mjs sets LORAXS_REPO_ROOT; the bundles live in dist/bench/). */
export const repoRoot = process.env.LORAXS_REPO_ROOT ?? path.resolve(__dirname, '..', '..');
export const benchDir = path.join(repoRoot, 'bench');
/** Scratch files (generated checkpoints, matrices, part results); gitignored. */
export const scratchDir = process.env.LORAXS_BENCH_SCRATCH ?? path.join(benchDir, 'results', 'tmp');
export const partsDir = path.join(scratchDir, 'parts');
export const sharedDir = path.resolve(repoRoot, '..', 'shared');
/** Set by `npm run bench -- --quick`: fewer modules and steps, for checking that everything runs. */
export const quick = process.env.LORAXS_BENCH_QUICK === '1';

export function ensureDir(dir: string): string {
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** Writes one part's results (read back by run.mjs). */
export function writePart(name: string, result: unknown): void {
  ensureDir(partsDir);
  fs.writeFileSync(path.join(partsDir, `${name}.json`), JSON.stringify(result, null, 2) + '\n');
}

export function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

/** Seconds taken by fn. */
export function seconds<T>(fn: () => T): { value: T; s: number } {
  const t0 = performance.now();
  const value = fn();
  return { value, s: (performance.now() - t0) / 1000 };
}

export async function secondsAsync<T>(fn: () => Promise<T>): Promise<{ value: T; s: number }> {
  const t0 = performance.now();
  const value = await fn();
  return { value, s: (performance.now() - t0) / 1000 };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/** Peak resident set size of this process so far, bytes. */
/** A /proc/self/status field in bytes (Linux), or null. */
export function procStatusBytes(field: 'VmHWM' | 'VmRSS', pid: number | 'self' = 'self'): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

export function peakRssBytes(): number {
  return process.resourceUsage().maxRSS * 1024;
}

/**
 * The Python interpreter of the reference scripts: $BENCH_PYTHON, else bench/.venv (bench/setup.sh), else
 * the trainer's .venv-trainer (torch and transformers, what `.ci/run` installs for `loraxs launch`).
 */
export function pythonPath(): string | null {
  const env = process.env.BENCH_PYTHON;
  if (env) return env;
  const venvs = [path.join(benchDir, '.venv', 'bin', 'python'), path.join(repoRoot, '.venv-trainer', 'bin', 'python')];
  return venvs.find((v) => fs.existsSync(v)) ?? null;
}

/** A reply of a reference process. */
export type Reply = Record<string, unknown> & { error?: string };

/**
 * A Python reference script (bench/<script>.py) serving requests: it prints one `{"ready": ..., "versions": ...}`
 * line, then answers each request line with one reply line (see bench/py_serve.py).
 */
export class PyServer {
  private buffer = '';
  private waiting: Array<(line: string) => void> = [];
  private lines: string[] = [];
  private exited: string | null = null;

  private constructor(private readonly child: ChildProcessWithoutNullStreams, readonly script: string) {
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      this.buffer += chunk;
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        const w = this.waiting.shift();
        if (w) w(line);
        else this.lines.push(line);
      }
    });
    child.stderr.on('data', (chunk: Buffer) => process.stderr.write(chunk));
    child.on('exit', (code, signal) => {
      this.exited = `${script} exited (${code ?? signal})`;
      for (const w of this.waiting.splice(0)) w(JSON.stringify({ error: this.exited }));
    });
  }

  /**
   * Starts `bench/<script>.py` and waits for its ready line. Returns a reason string instead when there is
   * no interpreter or the script cannot start (e.g. a package is missing).
   */
  static async start(script: string, env: Record<string, string> = {}): Promise<{ server: PyServer; hello: Reply } | { why: string }> {
    const py = pythonPath();
    if (!py) return { why: 'no Python environment: run `bash bench/setup.sh` (or set BENCH_PYTHON)' };
    const child = spawn(py, ['-u', path.join(benchDir, `${script}.py`)], {
      stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env },
    });
    const server = new PyServer(child, script);
    const hello = await server.next();
    if (hello.error || !hello.ready) {
      server.close();
      return { why: `${script}.py did not start: ${hello.error ?? JSON.stringify(hello)}` };
    }
    return { server, hello };
  }

  private next(): Promise<Reply> {
    const parse = (line: string): Reply => {
      try {
        return JSON.parse(line) as Reply;
      } catch {
        return { error: `not JSON: ${line.slice(0, 200)}` };
      }
    };
    const line = this.lines.shift();
    if (line !== undefined) return Promise.resolve(parse(line));
    if (this.exited) return Promise.resolve({ error: this.exited });
    return new Promise((resolve) => this.waiting.push((l) => resolve(parse(l))));
  }

  /** Sends one request and waits for its reply. */
  request(req: Record<string, unknown>): Promise<Reply> {
    if (this.exited) return Promise.resolve({ error: this.exited });
    this.child.stdin.write(JSON.stringify(req) + '\n');
    return this.next();
  }

  close(): void {
    if (!this.exited) this.child.stdin.end();
  }
}

/** Cores, CPU model, memory, OS and load: the context every figure was measured in. */
export function machineInfo(): Record<string, unknown> {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown';
  try {
    const m = /model name\s*:\s*(.+)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpuModel = m[1].trim();
  } catch {
    /* not Linux */
  }
  return {
    hostname: os.hostname(),
    cpuModel,
    cores: os.cpus().length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    platform: `${os.platform()} ${os.release()}`,
    node: process.version,
    loadavg: os.loadavg(),
  };
}

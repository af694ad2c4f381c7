/**
 * `loraxs launch`: the same config trained by PyTorch + Accelerate (trainer/train.py), on one or many
 * processes, GPUs or machines.
 *
 *   1. the config is loaded and the output folder checked as `train` does;
 *   2. the engine writes the run plan (run_plan.ts: batches in its order, initial R, head and factors);
 *   3. an Accelerate config file goes to <output>/accelerate_config.yaml;
 *   4. `python -m accelerate.commands.launch --config_file ... trainer/train.py --plan <output>/plan` runs in
 *      its own process group; its step and eval lines become JobEvents; the signal sends SIGTERM to the
 *      whole group (every rank saves one checkpoint at the same update) and the launch waits for the group
 *      to be gone; a trainer that fails (a rank died: torchrun stops the others; a collective that waits
 *      on a dead rank gives up after the trainer's --collective-timeout) rejects with the rank's error.
 *
 * The launcher's group outlives a sidecar killed outright (SIGKILL: no SIGTERM is sent): the trainer watches
 * this process (LORAXS_PARENT_PID) and, when it is gone, stops as on SIGTERM, with a checkpoint.
 *
 * It is a job of the one job runner (engine/jobs.ts, kind `launch`): `loraxs launch` and the sidecar (a
 * config with `compute.backend: torch`) both run it there.
 *
 * On a machine without CUDA the processes are CPU processes talking over gloo: Accelerate's own MULTI_CPU
 * launcher needs mpirun, so the config says MULTI_GPU (torchrun) and ACCELERATE_USE_CPU=true makes every
 * process a CPU one.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as net from 'node:net';
import { spawn, spawnSync } from 'node:child_process';
import type { RunConfig } from '../config/types';
import { LoraxsError } from '../errors';
import { preflightOutput, writeOutputMarker, OUTPUT_MARKER, type OutputCheck } from '../io/output_folder';
import { readSafetensorsHeader } from '../io/safetensors';
import { writeRunPlan, type RunPlan } from './run_plan';
import { isBestRecord, isEvalRecord, isStepRecord, type EngineEvents, type LaunchResult, type MetricsRecord, type TrainResult } from '../records';

export type MixedPrecision = 'no' | 'bf16' | 'fp16';

export interface LaunchOptions {
  /** Processes per machine (default: compute.processes, else 1). */
  processes?: number;
  nnodes?: number;
  nodeRank?: number;
  /** ADDR:PORT of the main machine (rank 0). */
  main?: string;
  mixedPrecision?: MixedPrecision;
  fsdp?: boolean;
  /** A DeepSpeed JSON config file. */
  deepspeed?: string;
  dryRun?: boolean;
  resume?: boolean;
  overwrite?: boolean;
  python?: string;
  /** Force CPU processes (gloo); default: when the Python's torch sees no CUDA device. */
  cpu?: boolean;
  gradientCheckpointing?: boolean;
}

export interface LaunchSettings {
  processesPerNode: number;
  nnodes: number;
  nodeRank: number;
  mainAddress: string;
  mainPort: number;
  mixedPrecision: MixedPrecision;
  fsdp: boolean;
  deepspeed: string | null;
  cpu: boolean;
}

export interface LaunchPlan {
  python: string;
  trainer: string;
  command: string[];
  env: Record<string, string>;
  accelerateConfigFile: string;
  accelerateConfig: string;
  planDir: string;
}


/** The repository folder that holds trainer/train.py (LORAXS_REPO_ROOT, else up from this bundle). */
export function trainerRoot(): string {
  const candidates = [process.env.LORAXS_REPO_ROOT, __dirname, process.cwd()].filter((x): x is string => !!x);
  for (const start of candidates) {
    let dir = path.resolve(start);
    for (;;) {
      if (fs.existsSync(path.join(dir, 'trainer', 'train.py'))) return dir;
      const up = path.dirname(dir);
      if (up === dir) break;
      dir = up;
    }
  }
  throw new LoraxsError('trainer/train.py was not found beside this installation (loraxs launch needs the repository checkout)');
}

/** The trainer's Python: --python, compute.python, <repo>/.venv-trainer/bin/python, else python3. */
export function trainerPython(config: RunConfig | null, opts: LaunchOptions, root: string): string {
  if (opts.python) return opts.python;
  if (config?.compute?.python) return config.compute.python;
  const venv = path.join(root, '.venv-trainer', 'bin', 'python');
  return fs.existsSync(venv) ? venv : 'python3';
}

const yamlValue = (v: string | number | boolean): string => (typeof v === 'string' ? JSON.stringify(v) : String(v));

/** The Accelerate config file (the format `accelerate config` writes; accelerate/commands/config/config_args.py). */
export function accelerateConfigYaml(s: LaunchSettings): string {
  const total = s.processesPerNode * s.nnodes;
  const distributed = s.deepspeed ? 'DEEPSPEED' : s.fsdp ? 'FSDP' : total > 1 ? 'MULTI_GPU' : 'NO';
  const lines: string[] = [
    '# Written by `loraxs launch`; run by hand: accelerate launch --config_file THIS trainer/train.py --plan PLAN',
    'compute_environment: LOCAL_MACHINE',
    `distributed_type: ${distributed}`,
    `num_machines: ${s.nnodes}`,
    `machine_rank: ${s.nodeRank}`,
    `num_processes: ${total}`,
    `mixed_precision: ${yamlValue(s.mixedPrecision)}`,
    // CPU with one process: the simple launcher; with several, torchrun + ACCELERATE_USE_CPU (see above).
    `use_cpu: ${s.cpu && total === 1}`,
    'gpu_ids: all',
    `main_process_port: ${s.mainPort}`,
    'rdzv_backend: static',
    'same_network: true',
    'downcast_bf16: "no"',
    'tpu_use_cluster: false',
    'tpu_use_sudo: false',
    'tpu_env: []',
  ];
  if (s.nnodes > 1) lines.push(`main_process_ip: ${yamlValue(s.mainAddress)}`);
  if (s.fsdp && !s.deepspeed) {
    lines.push(
      'fsdp_config:',
      '  fsdp_version: 2',
      '  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP',
      '  fsdp_cpu_ram_efficient_loading: true',
      '  fsdp_offload_params: false',
      '  fsdp_reshard_after_forward: true',
      '  fsdp_state_dict_type: FULL_STATE_DICT',
      '  fsdp_activation_checkpointing: false',
    );
  }
  if (s.deepspeed) {
    lines.push('deepspeed_config:', `  deepspeed_config_file: ${yamlValue(path.resolve(s.deepspeed))}`, `  deepspeed_multinode_launcher: standard`, '  zero3_init_flag: false');
  }
  return lines.join('\n') + '\n';
}

function parseMain(main: string | undefined, nnodes: number): { address: string; port: number } {
  if (!main) {
    if (nnodes > 1) throw new LoraxsError('--nnodes above 1 needs --main ADDR:PORT (the address of the machine with --node-rank 0)');
    return { address: '127.0.0.1', port: 29500 };
  }
  const m = /^(.+):(\d+)$/.exec(main);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new LoraxsError(`--main must be ADDR:PORT, got '${main}'`);
  return { address: m[1], port: Number(m[2]) };
}

/** Whether the Python's torch sees a CUDA device (false when it cannot tell). */
function torchHasCuda(python: string): boolean {
  const r = spawnSync(python, ['-c', 'import torch,sys; sys.stdout.write(str(torch.cuda.is_available()))'], { encoding: 'utf8', timeout: 120_000 });
  return r.status === 0 && r.stdout.trim() === 'True';
}

/** Settings, command and config file text (nothing is written or run). */
export function prepareLaunch(config: RunConfig, opts: LaunchOptions): LaunchPlan & { settings: LaunchSettings } {
  const root = trainerRoot();
  const python = trainerPython(config, opts, root);
  const nnodes = opts.nnodes ?? 1;
  const nodeRank = opts.nodeRank ?? 0;
  if (!Number.isInteger(nnodes) || nnodes < 1) throw new LoraxsError(`--nnodes must be a positive integer, got ${nnodes}`);
  if (!Number.isInteger(nodeRank) || nodeRank < 0 || nodeRank >= nnodes) throw new LoraxsError(`--node-rank must be in 0..${nnodes - 1}, got ${nodeRank}`);
  const { address, port } = parseMain(opts.main, nnodes);
  const mixed = opts.mixedPrecision ?? config.compute?.mixedPrecision ?? 'no';
  if (!['no', 'bf16', 'fp16'].includes(mixed)) throw new LoraxsError(`--mixed-precision must be no, bf16 or fp16, got '${mixed}'`);
  if (opts.deepspeed && !fs.existsSync(opts.deepspeed)) throw new LoraxsError(`--deepspeed: ${opts.deepspeed} does not exist`);
  const cpu = opts.cpu ?? (opts.dryRun ? false : !torchHasCuda(python));
  const settings: LaunchSettings = {
    processesPerNode: opts.processes ?? config.compute?.processes ?? 1,
    nnodes, nodeRank, mainAddress: address, mainPort: port, mixedPrecision: mixed, fsdp: opts.fsdp === true, deepspeed: opts.deepspeed ?? null, cpu,
  };
  if (!Number.isInteger(settings.processesPerNode) || settings.processesPerNode < 1) throw new LoraxsError(`--processes must be a positive integer, got ${settings.processesPerNode}`);
  const accelerateConfigFile = path.join(config.output, 'accelerate_config.yaml');
  const planDir = path.join(config.output, 'plan');
  const trainer = path.join(root, 'trainer', 'train.py');
  const command = [python, '-m', 'accelerate.commands.launch', '--config_file', accelerateConfigFile, trainer, '--plan', planDir, '--mixed-precision', mixed];
  if (opts.gradientCheckpointing ?? config.compute?.gradientCheckpointing) command.push('--gradient-checkpointing');
  if (opts.resume) command.push('--resume');
  const env: Record<string, string> = {};
  if (cpu) env.ACCELERATE_USE_CPU = 'true';
  return { python, trainer, command, env, accelerateConfigFile, accelerateConfig: accelerateConfigYaml(settings), planDir, settings };
}

const shellQuote = (s: string): string => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/** The command line as a shell would take it (environment first). */
export function commandLine(p: Pick<LaunchPlan, 'command' | 'env'>): string {
  return [...Object.entries(p.env).map(([k, v]) => `${k}=${shellQuote(v)}`), ...p.command.map(shellQuote)].join(' ');
}

/** A TCP port free on this machine now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once no process of the group `pgid` is left (or after `ms`). */
async function groupGone(pgid: number, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    try {
      process.kill(-pgid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A dry run: the command line and the Accelerate config, nothing written or run. */
export function dryRunLaunch(config: RunConfig, opts: LaunchOptions): LaunchResult {
  const p = prepareLaunch(config, { ...opts, dryRun: true });
  return {
    output: config.output, dryRun: true, command: p.command, accelerateConfigFile: p.accelerateConfigFile, ...where(p.settings),
    text: `${commandLine(p)}\n\n# ${p.accelerateConfigFile}\n${p.accelerateConfig}`,
  };
}

const where = (s: LaunchSettings): Pick<LaunchResult, 'processes' | 'device'> => ({ processes: s.processesPerNode * s.nnodes, device: s.cpu ? 'cpu' : 'cuda' });

/** The output folder checked as `train` checks it (before anything is written or loaded). */
export function launchPreflight(config: RunConfig, opts: LaunchOptions): OutputCheck {
  return preflightOutput({
    job: 'train', outDir: config.output, overwrite: opts.overwrite === true, resume: opts.resume === true, bytes: 0, mode: 'into',
    inputs: [{ path: config.model, what: 'the model folder' }, { path: config.file, what: 'the config file' }],
  });
}

/**
 * Runs one launch (engine/jobs.ts calls it after the pre-flight and `started`): the run plan, the Accelerate
 * config, then `accelerate launch` in its own process group. The trainer's step and eval lines become
 * `step` and `eval` events as they arrive, its other output `log` events. `signal` (polled: the job worker's
 * signal has only `aborted`) sends SIGTERM to the whole group: every rank stops before the same micro-batch
 * and rank 0 saves the checkpoint. A trainer that fails (a rank died, a bad plan) rejects with its error.
 */
/** Errors a rank gets because another rank died (gloo, NCCL and c10d wording), not the cause itself. */
const PEER_FAILURE = /closed by peer|reset by peer|remote worker|Broken pipe|DistBackendError|Watchdog caught collective|NCCL (communicator|error)|timed out|Timeout/i;

export async function runLaunch(config: RunConfig, out: OutputCheck, opts: LaunchOptions, events: Required<EngineEvents>, signal?: AbortSignal): Promise<LaunchResult> {
  const t0 = Date.now();
  // One machine: a free port for the processes' rendezvous, so that two runs on one machine do not collide.
  if (!opts.main && (opts.nnodes ?? 1) === 1) opts = { ...opts, main: `127.0.0.1:${await freePort()}` };
  const p = prepareLaunch(config, opts);
  if (opts.overwrite && !opts.resume && out.state.kind === 'marked') fs.rmSync(out.outDir, { recursive: true, force: true });
  fs.mkdirSync(config.output, { recursive: true });
  if (!fs.existsSync(path.join(config.output, OUTPUT_MARKER))) writeOutputMarker(config.output, 'launch');
  if (opts.resume && fs.existsSync(path.join(p.planDir, 'plan.json'))) {
    events.log(`resuming with the plan in ${p.planDir}`);
  } else {
    events.log(`writing the run plan to ${p.planDir}`);
    await writeRunPlan(config, p.planDir, events);
  }
  fs.writeFileSync(p.accelerateConfigFile, p.accelerateConfig);
  events.log(commandLine(p));
  if (signal?.aborted) return { ...launched(p), train: launchTrainResult(config, p.planDir, true, t0) };

  // Each failing rank also writes its error to errorDir (trainer/train.py report_error): its stderr line can be lost.
  const errorDir = path.join(p.planDir, 'errors');
  fs.rmSync(errorDir, { recursive: true, force: true });
  // LORAXS_PARENT_PID: the trainer stops (at a checkpoint) when this process is gone (killed outright, no SIGTERM sent).
  const child = spawn(p.command[0], p.command.slice(1), {
    detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...p.env, LORAXS_PARENT_PID: String(process.pid), LORAXS_ERROR_DIR: errorDir },
  });
  const pgid = child.pid;
  let cancelled = false;
  let stopSent = false;
  const errors: string[] = [];
  const tail: string[] = [];
  const poll = setInterval(() => {
    if (!signal?.aborted || stopSent || pgid === undefined) return;
    stopSent = true;
    cancelled = true;
    try {
      process.kill(-pgid, 'SIGTERM');
    } catch {
      /* already gone */
    }
  }, 100);
  const onLines = (buf: { rest: string }) => (chunk: Buffer): void => {
    buf.rest += chunk.toString('utf8');
    const lines = buf.rest.split('\n');
    buf.rest = lines.pop() ?? '';
    for (const line of lines) {
      const tagged = /^\{"loraxs_(step|eval|cancelled|error)":/.exec(line);
      if (tagged) {
        try {
          const value = JSON.parse(line)[`loraxs_${tagged[1]}`];
          if (tagged[1] === 'step') events.step(value);
          else if (tagged[1] === 'eval') events.eval(value.record, value.best === true);
          else if (tagged[1] === 'cancelled') cancelled = true; // the trainer stopped early and saved its checkpoint
          else errors.push(`rank ${value.rank}: ${value.message}`);
          continue;
        } catch { /* shown as a log line */ }
      }
      if (!line.trim()) continue;
      events.log(line);
      tail.push(line);
      if (tail.length > 20) tail.shift();
    }
  };
  child.stdout!.on('data', onLines({ rest: '' }));
  child.stderr!.on('data', onLines({ rest: '' }));
  let exitCode: number;
  try {
    exitCode = await new Promise<number>((resolve, reject) => {
      child.on('error', (e) => reject(new LoraxsError(`could not run ${p.command[0]}: ${e.message} (install the trainer: ${p.python} -m pip install -r trainer/requirements.txt, or pass --python)`)));
      child.on('close', (code, sig) => resolve(code ?? (sig === 'SIGTERM' ? 143 : sig === 'SIGINT' ? 130 : 1)));
    });
  } finally {
    clearInterval(poll);
  }
  // The launcher may exit before its processes do (a signal to the group reaches them all): wait for them.
  if (pgid !== undefined) await groupGone(pgid, 120_000);
  const ckpt = path.join(config.output, 'trainer_checkpoint', 'state.pt');
  if (cancelled && !fs.existsSync(ckpt)) events.log('cancelled before the trainer saved a checkpoint');
  if (exitCode !== 0 && !(cancelled && fs.existsSync(ckpt))) {
    // The rank that failed first names the cause; the others then fail on the broken collective ("Connection
    // closed by peer", NCCL timeouts), and their lines may arrive first, so they are reported only when alone.
    for (const f of fs.existsSync(errorDir) ? fs.readdirSync(errorDir).sort() : []) {
      try {
        const value = JSON.parse(fs.readFileSync(path.join(errorDir, f), 'utf8')) as { rank: number; message: string };
        const line = `rank ${value.rank}: ${value.message}`;
        if (!errors.includes(line)) errors.push(line);
      } catch { /* a file cut short by the rank's end: its stderr line, if any, is in errors */ }
    }
    const why = errors.find((e) => !PEER_FAILURE.test(e)) ?? errors[0] ?? tail.filter((l) => /\b\w*(Error|Exception)\b/.test(l)).at(-1) ?? tail.at(-1) ?? 'no output';
    throw new LoraxsError(`the trainer failed (accelerate launch exited with ${exitCode}): ${why}`);
  }
  return { ...launched(p), train: launchTrainResult(config, p.planDir, cancelled, t0) };
}

function launched(p: ReturnType<typeof prepareLaunch>): LaunchResult {
  return { output: path.dirname(p.accelerateConfigFile), dryRun: false, command: p.command, accelerateConfigFile: p.accelerateConfigFile, ...where(p.settings) };
}

/** The launch's result in `train`'s terms, from plan.json, the adapter and metrics.jsonl. */
function launchTrainResult(config: RunConfig, planDir: string, cancelled: boolean, t0: number): TrainResult {
  const plan = JSON.parse(fs.readFileSync(path.join(planDir, 'plan.json'), 'utf8')) as RunPlan;
  const records: MetricsRecord[] = [];
  const metricsFile = path.join(config.output, 'metrics.jsonl');
  if (fs.existsSync(metricsFile)) {
    for (const line of fs.readFileSync(metricsFile, 'utf8').split('\n')) {
      try {
        if (line.trim()) records.push(JSON.parse(line) as MetricsRecord);
      } catch { /* a line cut by a kill: not a record */ }
    }
  }
  const steps = records.filter(isStepRecord).at(-1)?.step ?? 0;
  const bestLine = records.filter(isBestRecord).at(-1);
  const best = bestLine ? records.filter(isEvalRecord).filter((r) => r.step === bestLine.step).at(-1) ?? null : null;
  // A model the engine cannot hold: the trainer matched the modules; its saved adapter lists them.
  let modules: Array<{ rank: number }> = plan.adapter.modules;
  const saved = path.join(config.output, 'last', 'loraxs_config.json');
  if (modules.length === 0 && fs.existsSync(saved)) modules = (JSON.parse(fs.readFileSync(saved, 'utf8')) as { modules: Array<{ rank: number }> }).modules;
  const adapterParams = modules.reduce((a, m) => a + m.rank * m.rank, 0);
  let headParams = 0;
  const headFile = path.join(planDir, plan.init_adapter ?? 'init_adapter', 'head.safetensors');
  if (fs.existsSync(headFile)) {
    for (const t of readSafetensorsHeader(headFile).tensors.values()) headParams += t.shape.reduce((a, b) => a * b, 1);
  }
  const adapterFile = path.join(config.output, 'adapter.safetensors');
  return {
    output: config.output, adapterDir: config.output, steps, totalSteps: plan.training.total_steps, cancelled,
    best: best ? { step: best.step, epoch: best.epoch, eval: best.eval } : null,
    trainableParams: adapterParams + headParams, adapterParams, adapterBytes: fs.existsSync(adapterFile) ? fs.statSync(adapterFile).size : 0,
    seconds: (Date.now() - t0) / 1000,
  };
}

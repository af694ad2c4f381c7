/**
 * `loraxs launch CONFIG`: the config trained by PyTorch + Accelerate (trainer/train.py) through
 * `accelerate launch` (engine/launch.ts), run by the one job runner (engine/jobs.ts, kind `launch`).
 * `--dry-run` prints the command and the Accelerate config.
 */
import { LoraxsError } from '../errors';
import { str, positiveInt, interruptSignal, interruptExitCode, type CommandSpec, type OptionValues } from './options';
import { stderrProgress } from './progress';
import { runJob } from '../engine/jobs';
import type { MixedPrecision } from '../engine/launch';

function nonNegativeInt(v: OptionValues, key: string): number | undefined {
  const x = str(v, key);
  if (x === undefined) return undefined;
  const n = Number(x);
  if (!Number.isInteger(n) || n < 0) throw new LoraxsError(`--${key} must be a non-negative integer, got '${x}'`);
  return n;
}

export const launchCommand: CommandSpec = {
  summary: 'train the config with PyTorch + Accelerate (trainer/train.py): several processes, GPUs or machines; same metrics.jsonl and adapter',
  usage: 'CONFIG [--processes N] [--nnodes M --node-rank K --main ADDR:PORT] [--mixed-precision no|bf16|fp16] [--fsdp] [--deepspeed FILE] [--python PY] [--cpu] [--resume | --overwrite] [--dry-run]',
  positionals: 1,
  options: {
    processes: { type: 'string', valueName: 'N', help: 'processes per machine (one per GPU; CPU: gloo processes); default compute.processes or 1' },
    nnodes: { type: 'string', valueName: 'M', help: 'machines (default 1)' },
    'node-rank': { type: 'string', valueName: 'K', help: 'this machine\'s index, 0..M-1' },
    main: { type: 'string', valueName: 'addr:port', help: 'address of the machine with --node-rank 0' },
    'mixed-precision': { type: 'string', valueName: 'p', help: 'no | bf16 | fp16 (default compute.mixed_precision or no); R stays fp32' },
    fsdp: { type: 'boolean', help: 'an FSDP Accelerate config (generated; see the README for what was run)' },
    deepspeed: { type: 'string', valueName: 'file', help: 'a DeepSpeed JSON config for the Accelerate config' },
    python: { type: 'string', valueName: 'py', help: 'the Python with trainer/requirements.txt (default compute.python, .venv-trainer/bin/python, python3)' },
    cpu: { type: 'boolean', help: 'CPU processes over gloo even when CUDA is there' },
    'gradient-checkpointing': { type: 'boolean', help: 'recompute activations in the backward pass' },
    resume: { type: 'boolean', help: 'continue from <output>/trainer_checkpoint (any number of processes)' },
    overwrite: { type: 'boolean', help: 'replace the output folder when LoRA-XS wrote it' },
    'dry-run': { type: 'boolean', help: 'print the command and the Accelerate config; write and run nothing' },
    json: { type: 'boolean', help: 'print the result as JSON on stdout' },
  },
  async run([file], v) {
    const mixed = str(v, 'mixed-precision');
    if (mixed !== undefined && !['no', 'bf16', 'fp16'].includes(mixed)) throw new LoraxsError(`--mixed-precision must be no, bf16 or fp16, got '${mixed}'`);
    const dryRun = v['dry-run'] === true;
    const stop = dryRun ? undefined : interruptSignal('every process saves a checkpoint at the same update');
    const job = await runJob({ kind: 'launch', configFile: file, options: {
      processes: positiveInt(v, 'processes'),
      nnodes: positiveInt(v, 'nnodes'),
      nodeRank: nonNegativeInt(v, 'node-rank'),
      main: str(v, 'main'),
      mixedPrecision: mixed as MixedPrecision | undefined,
      fsdp: v.fsdp === true,
      deepspeed: str(v, 'deepspeed'),
      python: str(v, 'python'),
      cpu: v.cpu === true ? true : undefined,
      gradientCheckpointing: v['gradient-checkpointing'] === true ? true : undefined,
      resume: v.resume === true,
      overwrite: v.overwrite === true,
      dryRun,
    } }, stderrProgress(), stop);
    if (job.kind !== 'launch') throw new Error(`internal error: a launch job returned ${job.kind}`);
    const result = job.result;
    const cancelled = result.train?.cancelled === true;
    if (v.json === true) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    else if (result.text) process.stdout.write(result.text);
    else process.stdout.write(`${cancelled ? 'cancelled' : 'finished'}; output: ${result.output}\n`);
    // Stopped by our signal: 130/143 as `loraxs train`; stopped by the trainer itself (its processes were signalled): 0.
    if (cancelled) return stop?.aborted ? interruptExitCode(stop) : 0;
    return 0;
  },
};

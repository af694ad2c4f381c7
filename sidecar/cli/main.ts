/**
 * `loraxs`: the engine headless, for CI, scripts and remote machines. Results go to stdout, progress and
 * logs to stderr. Errors caused by input print `file:line:col: message` and exit 1 without a stack trace;
 * a refused output location and a filesystem error (EACCES, EROFS, ENOSPC, ...) print `path: what; what to
 * do` and exit 73 (cannot create the output there) or 74 (I/O error, disk full); anything else is a bug:
 * "internal error (please report)" with its stack, exit 70. The README has the table.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import * as path from 'node:path';
import { LoraxsError } from '../errors';
import { exitCodeOf, toFsUserError } from '../io/fs_errors';
import { placeConfigError } from '../config/parse';
import { COMMANDS } from './commands';
import { isJobWorker, runJobWorker } from '../engine/job_thread';
import type { CommandSpec } from './options';

const VERSION = '0.1.0';

function usage(): string {
  const lines = [
    'loraxs: fine-tune Hugging Face transformers with LoRA-XS (TensorFlow.js engine)',
    '',
    'Usage: loraxs <command> [options]   (loraxs <command> --help for details)',
    '',
    'Commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`),
  ];
  return lines.join('\n') + '\n';
}

function commandHelp(name: string, spec: CommandSpec): string {
  const opts = Object.entries(spec.options).map(([k, o]) =>
    `  --${k}${o.type === 'string' ? ` <${o.valueName ?? 'value'}>` : ''}`.padEnd(30) + ` ${o.help}`);
  return [`Usage: loraxs ${name} ${spec.usage}`, '', spec.summary, '', 'Options:', ...opts, '  --help'.padEnd(30) + ' show this help', ''].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  if (name === '--version') {
    process.stdout.write(VERSION + '\n');
    return 0;
  }
  const spec = COMMANDS[name];
  if (!spec) {
    process.stderr.write(`loraxs: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  const options: ParseArgsConfig['options'] = { help: { type: 'boolean' } };
  for (const [k, o] of Object.entries(spec.options)) options[k] = { type: o.type };
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options, allowPositionals: true, strict: true });
  } catch (e) {
    process.stderr.write(`loraxs ${name}: ${(e as Error).message}\n\n${commandHelp(name, spec)}`);
    return 2;
  }
  if (parsed.values.help) {
    process.stdout.write(commandHelp(name, spec));
    return 0;
  }
  if (parsed.positionals.length < spec.positionals) {
    process.stderr.write(`loraxs ${name}: missing argument\n\n${commandHelp(name, spec)}`);
    return 2;
  }
  try {
    return (await spec.run(parsed.positionals, parsed.values as Record<string, string | boolean | undefined>)) ?? 0;
  } catch (caught) {
    const user = toFsUserError(caught);
    const e = typeof parsed.positionals[0] === 'string' && /\.ya?ml$/.test(parsed.positionals[0])
      ? placeConfigError(user, path.resolve(parsed.positionals[0]))
      : user;
    if (e instanceof LoraxsError) {
      process.stderr.write(`loraxs ${name}: error: ${e.format()}\n`);
      return exitCodeOf(e);
    }
    process.stderr.write(`loraxs ${name}: internal error (please report): ${(e as Error).stack ?? e}\n`);
    return 70;
  }
}

/** Runs the CLI and sets the exit code (bin/loraxs.js and `node dist/cli.js` both come here). */
export function run(argv: string[]): void {
  main(argv).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`loraxs: ${(e as Error).stack ?? e}\n`);
      process.exitCode = 70;
    },
  );
}

// Started as the worker thread of a long job (cli/job_in_thread.ts): run the job, not the command line.
if (isJobWorker()) void runJobWorker();
else if (require.main === module) run(process.argv.slice(2));

/**
 * The memory a run may use: `compute.memory_budget_gb` in the config, else $LORAXS_MEMORY_BUDGET_GB, else
 * 85 % of the machine's memory (its cgroup limit when one is set and lower: a container's limit, not the
 * host's RAM). Models are refused before loading when their weights do not fit it (io/model_folder.ts
 * assertFitsBackend) and training micro-batches are sized from it (train/micro_batches.ts). The wasm
 * backend stays capped by its 4 GB heap whatever the budget.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { LoraxsError } from '../errors';

/** The share of the machine's memory a run takes by default (the OS, Node and VS Code keep the rest). */
export const DEFAULT_MEMORY_SHARE = 0.85;
export const MEMORY_BUDGET_ENV = 'LORAXS_MEMORY_BUDGET_GB';

export interface MemoryBudget {
  bytes: number;
  /** Where the figure comes from, for messages: the config key, the variable or the machine. */
  source: string;
}

const GiB = 1024 ** 3;

/**
 * The cgroup's memory limit in bytes (cgroup v2 `memory.max`, else v1 `memory.limit_in_bytes`), or null
 * when none is set ("max", or v1's huge "unlimited" value) or the files are absent (not Linux).
 */
export function cgroupMemoryLimit(root = '/sys/fs/cgroup'): number | null {
  for (const file of [`${root}/memory.max`, `${root}/memory/memory.limit_in_bytes`]) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8').trim();
    } catch {
      continue;
    }
    if (text === 'max') return null;
    const n = Number(text);
    // cgroup v1 reports "no limit" as a page-rounded 2^63 - 1.
    if (Number.isFinite(n) && n > 0 && n < 2 ** 60) return n;
    return null;
  }
  return null;
}

/**
 * @param configGb `compute.memory_budget_gb` (already validated by the config schema), if given
 * @param env the environment read for LORAXS_MEMORY_BUDGET_GB
 */
export function memoryBudget(configGb?: number | null, env: NodeJS.ProcessEnv = process.env, cgroupRoot?: string): MemoryBudget {
  if (configGb !== undefined && configGb !== null) return { bytes: configGb * GiB, source: 'compute.memory_budget_gb' };
  const fromEnv = env[MEMORY_BUDGET_ENV];
  if (fromEnv !== undefined && fromEnv !== '') {
    const gb = Number(fromEnv);
    if (!Number.isFinite(gb) || gb <= 0) {
      throw new LoraxsError(`${MEMORY_BUDGET_ENV}=${fromEnv} is not a positive number of GB; set it to e.g. 16, or unset it to use ${DEFAULT_MEMORY_SHARE * 100} % of the machine's memory`);
    }
    return { bytes: gb * GiB, source: MEMORY_BUDGET_ENV };
  }
  const ram = os.totalmem();
  const cgroup = cgroupMemoryLimit(cgroupRoot);
  const machine = cgroup !== null && cgroup < ram ? cgroup : ram;
  const what = cgroup !== null && cgroup < ram ? `its cgroup limit of ${formatGb(cgroup)}` : `${formatGb(ram)} of RAM`;
  return { bytes: Math.floor(machine * DEFAULT_MEMORY_SHARE), source: `${DEFAULT_MEMORY_SHARE * 100} % of the machine's memory (${what}; set compute.memory_budget_gb or ${MEMORY_BUDGET_ENV} to change it)` };
}

export function formatGb(bytes: number): string {
  return `${(bytes / GiB).toFixed(2)} GB`;
}

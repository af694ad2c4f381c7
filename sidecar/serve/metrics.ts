/**
 * The server's counters, exposed at GET /metrics in the Prometheus text format (version 0.0.4): requests by
 * endpoint and status, tokens in and out, forward passes and their batch sizes (rows, distinct adapters),
 * resident adapters and factor sets, and the bytes they hold.
 */
export interface Gauges {
  residentAdapters: number;
  factorSets: number;
  adapterBytes: number;
  budgetBytes: number;
  activeSequences: number;
  queuedRequests: number;
  tensors: number;
  backendBytes: number;
  adapterLoads: number;
  adapterEvictions: number;
}

/** Histogram buckets of batch sizes (rows per forward pass). */
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];

class Histogram {
  counts = new Array<number>(BATCH_BUCKETS.length).fill(0);
  sum = 0;
  count = 0;
  max = 0;
  observe(v: number): void {
    BATCH_BUCKETS.forEach((b, i) => { if (v <= b) this.counts[i]++; });
    this.sum += v;
    this.count++;
    this.max = Math.max(this.max, v);
  }
  lines(name: string, help: string): string[] {
    return [
      `# HELP ${name} ${help}`, `# TYPE ${name} histogram`,
      ...BATCH_BUCKETS.map((b, i) => `${name}_bucket{le="${b}"} ${this.counts[i]}`),
      `${name}_bucket{le="+Inf"} ${this.count}`, `${name}_sum ${this.sum}`, `${name}_count ${this.count}`,
    ];
  }
}

export class ServeMetrics {
  private readonly requests = new Map<string, number>();
  promptTokens = 0;
  completionTokens = 0;
  readonly batchRows = new Histogram();
  readonly batchAdapters = new Histogram();

  request(route: string, status: number): void {
    const key = `route="${route}",status="${status}"`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
  }

  /** One forward pass: its rows (sequences or texts) and the distinct adapters among them (the base counts as one). */
  batch(rows: number, adapters: number): void {
    this.batchRows.observe(rows);
    this.batchAdapters.observe(adapters);
  }

  text(g: Gauges): string {
    const gauge = (name: string, help: string, v: number): string[] => [`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${v}`];
    const counter = (name: string, help: string, v: number): string[] => [`# HELP ${name} ${help}`, `# TYPE ${name} counter`, `${name} ${v}`];
    return [
      '# HELP loraxs_requests_total HTTP requests by route and status.', '# TYPE loraxs_requests_total counter',
      ...[...this.requests].map(([k, v]) => `loraxs_requests_total{${k}} ${v}`),
      ...counter('loraxs_prompt_tokens_total', 'Prompt tokens processed.', this.promptTokens),
      ...counter('loraxs_completion_tokens_total', 'Tokens generated.', this.completionTokens),
      ...this.batchRows.lines('loraxs_batch_rows', 'Rows (sequences or texts) per forward pass through the base model.'),
      ...this.batchAdapters.lines('loraxs_batch_adapters', 'Distinct adapters (the base model counts as one) per forward pass.'),
      ...gauge('loraxs_batch_adapters_max', 'Most distinct adapters seen in one forward pass.', this.batchAdapters.max),
      ...gauge('loraxs_resident_adapters', 'Adapters loaded in memory.', g.residentAdapters),
      ...gauge('loraxs_factor_sets', 'Distinct frozen factor sets held (one per checksum).', g.factorSets),
      ...gauge('loraxs_adapter_memory_bytes', 'Bytes held by resident adapters (R, heads) and their factor sets.', g.adapterBytes),
      ...gauge('loraxs_memory_budget_bytes', 'The --memory-budget for adapters and factors.', g.budgetBytes),
      ...gauge('loraxs_active_sequences', 'Sequences being generated.', g.activeSequences),
      ...gauge('loraxs_queued_requests', 'Requests waiting to join the batch.', g.queuedRequests),
      ...gauge('loraxs_tensors', 'Tensors allocated on the backend.', g.tensors),
      ...gauge('loraxs_backend_bytes', 'Bytes of all tensors on the backend (base model included).', g.backendBytes),
      ...counter('loraxs_adapter_loads_total', 'Adapters loaded from disk.', g.adapterLoads),
      ...counter('loraxs_adapter_evictions_total', 'Adapters evicted to stay under the memory budget.', g.adapterEvictions),
      '',
    ].join('\n');
  }
}

/**
 * The params of every custom request, checked before its handler runs: a request with params of the wrong
 * shape is answered with InvalidParams (-32602) and a message naming the field, never with an internal
 * error. Requests that read or write files take `file:` URIs only (untitled documents get syntax and schema
 * checks, nothing else), and the folders they write (a run's output, its analysis, a merge or export
 * folder) must be inside a workspace folder (workspace_roots.ts).
 *
 * `guardRequests` wraps a Connection so that every handler registered through it for a method in the
 * table gets its check first; the services register their handlers unchanged.
 */
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, ResponseError } from 'vscode-languageserver/node';
import type { Connection } from 'vscode-languageserver/node';
import { parseConfigText } from '../config/parse';
import type { ParsedConfig } from '../config/parse';
import {
  AblateRequest, CancelAblationRequest, CancelTrainingRequest, EvalRequest, ExportRequest, MergeRequest, ParamsRequest,
  ReadAnalysisRequest, ReadMetricsRequest, TrainRequest,
} from '../protocol';
import { EXPORT_FORMATS } from '../records';
import type { WorkspaceRoots } from './workspace_roots';

const ANALYSIS_KINDS = ['retention', 'delta', 'init', 'spectra'];
const REGIONS = ['top', 'middle', 'bottom'];
const INIT_KINDS = ['svd', 'svd-no-sigma', 'svd-bottom', 'random', 'svd-of-random'];
/** Longest string field accepted (paths, ids, URIs). */
const MAX_STRING = 8192;
/** Longest list field accepted (fractions, ranks, targets...). */
const MAX_LIST = 10000;

export function invalidParams(method: string, message: string): ResponseError<void> {
  return new ResponseError(ErrorCodes.InvalidParams, `${method}: ${message}`);
}

/** A short description of a value for messages. */
function shown(v: unknown): string {
  if (v === undefined) return 'nothing';
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** The file path of a `file:` URI, or why it is not one. */
export function fileUriPath(uri: string): string | { why: string } {
  if (!/^file:/i.test(uri)) {
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(uri)?.[1];
    return {
      why: scheme
        ? `must be a file: URI of a saved config, got a ${scheme}: URI (${shown(uri)}); unsaved (untitled) documents get syntax and schema checks only: save the config to use it`
        : `must be a file: URI, got ${shown(uri)}`,
    };
  }
  try {
    return fileURLToPath(uri);
  } catch (e) {
    return { why: `is not a valid file: URI (${shown(uri)}): ${(e as Error).message}` };
  }
}

/** Reads the fields of one request's params, throwing InvalidParams at the first bad one. */
export class ParamReader {
  private readonly o: Record<string, unknown>;

  constructor(private readonly method: string, params: unknown) {
    if (params === null || typeof params !== 'object' || Array.isArray(params)) {
      throw invalidParams(method, `params must be an object, got ${shown(params)}`);
    }
    this.o = params as Record<string, unknown>;
  }

  private bad(key: string, why: string): never {
    throw invalidParams(this.method, `${key} ${why}`);
  }

  has(key: string): boolean {
    return this.o[key] !== undefined && this.o[key] !== null;
  }

  string(key: string, optional = false): string | undefined {
    const v = this.o[key];
    if (v === undefined || v === null) {
      if (optional) return undefined;
      this.bad(key, 'is required (a string)');
    }
    if (typeof v !== 'string') this.bad(key, `must be a string, got ${shown(v)}`);
    if (v.trim() === '') this.bad(key, 'must not be empty');
    if (v.length > MAX_STRING) this.bad(key, `is too long (${v.length} characters; at most ${MAX_STRING})`);
    if (v.includes('\0')) this.bad(key, 'must not contain a NUL character');
    return v;
  }

  /** A `file:` URI: returns its path. */
  fileUri(key: string): string;
  fileUri(key: string, optional: true): string | undefined;
  fileUri(key: string, optional = false): string | undefined {
    const uri = this.string(key, optional);
    if (uri === undefined) return undefined;
    const p = fileUriPath(uri);
    if (typeof p !== 'string') this.bad(key, p.why);
    return p;
  }

  boolean(key: string): boolean | undefined {
    const v = this.o[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean') this.bad(key, `must be true or false, got ${shown(v)}`);
    return v;
  }

  oneOf(key: string, values: readonly string[], optional = false): string | undefined {
    const v = this.string(key, optional);
    if (v !== undefined && !values.includes(v)) this.bad(key, `must be one of ${values.join(', ')}, got ${shown(v)}`);
    return v;
  }

  number(key: string, integer = false): number | undefined {
    const v = this.o[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
      this.bad(key, `must be ${integer ? 'an integer' : 'a number'}, got ${shown(v)}`);
    }
    return v;
  }

  list<T>(key: string, item: (v: unknown) => v is T, what: string): T[] | undefined {
    const v = this.o[key];
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v)) this.bad(key, `must be a list (each ${ITEM_WORDS[what] ?? what}), got ${shown(v)}`);
    if (v.length > MAX_LIST) this.bad(key, `has ${v.length} items; at most ${MAX_LIST}`);
    const i = v.findIndex((x) => !item(x));
    if (i >= 0) this.bad(`${key}[${i}]`, `must be ${ITEM_WORDS[what] ?? what}, got ${shown(v[i])}`);
    return v as T[];
  }
}

/** The words for one item of a list described as `what`. */
const ITEM_WORDS: Record<string, string> = { numbers: 'a number', integers: 'an integer', 'module keys': 'a module key' };

const isFiniteNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isInteger = (v: unknown): v is number => Number.isInteger(v);
const isName = (v: unknown): v is string => typeof v === 'string' && v !== '' && v.length <= MAX_STRING;
const isOneOf = (values: readonly string[]) => (v: unknown): v is string => typeof v === 'string' && values.includes(v);

/** The output folder of the config file on disk, when it parses (a config with errors fails in its job). */
function outputOf(configFile: string): string | null {
  let text: string;
  try {
    const st = fs.statSync(configFile);
    if (!st.isFile() || st.size > 1024 * 1024) return null;
    text = fs.readFileSync(configFile, 'utf8');
  } catch {
    return null;
  }
  let config: ParsedConfig | null = null;
  try {
    config = parseConfigText(text, configFile, { readModel: false }).config;
  } catch {
    config = null;
  }
  return config?.output ?? null;
}

/** The checks of each custom request's params; `roots` decides where outputs may be. */
export function requestChecks(roots: WorkspaceRoots): Record<string, (params: unknown) => void> {
  const inside = (method: string, target: string, what: string, configFile?: string): void => {
    const why = roots.refusal(target, what, configFile);
    if (why) throw invalidParams(method, why);
  };
  const configOutputInside = (method: string, configFile: string, what: string): void => {
    const output = outputOf(configFile);
    if (output) inside(method, output, what, configFile);
  };
  const ablateFields = (r: ParamReader): void => {
    r.oneOf('kind', ANALYSIS_KINDS);
    r.string('adapterDir', true);
    r.string('baseDir', true);
    r.list('fractions', isFiniteNumber, 'numbers');
    r.list('regions', isOneOf(REGIONS), `one of ${REGIONS.join(', ')}`);
    r.boolean('perLayer');
    r.number('evalLimit', true);
    r.number('seeds', true);
    r.list('inits', isOneOf(INIT_KINDS), `one of ${INIT_KINDS.join(', ')}`);
    r.list('ranks', isInteger, 'integers');
    r.list('targets', isName, 'module keys');
  };
  return {
    [ParamsRequest.method]: (p) => {
      new ParamReader(ParamsRequest.method, p).fileUri('uri');
    },
    [ReadMetricsRequest.method]: (p) => {
      const r = new ParamReader(ReadMetricsRequest.method, p);
      r.string('output', true);
      r.fileUri('uri', true);
      if (!r.has('output') && !r.has('uri')) throw invalidParams(ReadMetricsRequest.method, 'needs output (a run folder) or uri (a config)');
      // Where the folder is (inside a workspace folder) is checked by the handler, which knows the config's output.
    },
    [TrainRequest.method]: (p) => {
      const r = new ParamReader(TrainRequest.method, p);
      const file = r.fileUri('uri');
      r.boolean('resume');
      r.string('runId', true);
      configOutputInside(TrainRequest.method, file, "the config's output folder");
    },
    [CancelTrainingRequest.method]: (p) => {
      new ParamReader(CancelTrainingRequest.method, p).string('runId', true);
    },
    [MergeRequest.method]: (p) => {
      const r = new ParamReader(MergeRequest.method, p);
      const file = r.fileUri('uri');
      r.string('adapterDir');
      const outDir = r.string('outDir')!;
      r.string('jobId', true);
      inside(MergeRequest.method, outDir, 'the merge folder (outDir)', file);
    },
    [EvalRequest.method]: (p) => {
      const r = new ParamReader(EvalRequest.method, p);
      r.fileUri('uri');
      r.string('adapterDir', true);
    },
    [ExportRequest.method]: (p) => {
      const r = new ParamReader(ExportRequest.method, p);
      r.string('adapterDir');
      r.string('modelDir', true);
      r.oneOf('format', EXPORT_FORMATS);
      const outDir = r.string('outDir')!;
      r.string('jobId', true);
      inside(ExportRequest.method, outDir, 'the export folder (outDir)');
    },
    [AblateRequest.method]: (p) => {
      const r = new ParamReader(AblateRequest.method, p);
      const file = r.fileUri('uri');
      r.string('jobId', true);
      ablateFields(r);
      configOutputInside(AblateRequest.method, file, "the config's output folder (analyses go to <output>/analysis)");
    },
    [CancelAblationRequest.method]: (p) => {
      new ParamReader(CancelAblationRequest.method, p).string('jobId', true);
    },
    [ReadAnalysisRequest.method]: (p) => {
      const r = new ParamReader(ReadAnalysisRequest.method, p);
      const file = r.fileUri('uri');
      configOutputInside(ReadAnalysisRequest.method, file, "the config's output folder (analyses are read from <output>/analysis)");
    },
  };
}

type Handler = (...args: unknown[]) => unknown;

/**
 * A view of `connection` whose `onRequest` runs `checks[method]` on the params before the handler: a
 * ResponseError it throws is the reply; any other exception becomes InvalidParams with its message.
 */
export function guardRequests(connection: Connection, checks: Record<string, (params: unknown) => void>): Connection {
  const onRequest = (type: unknown, handler: Handler): unknown => {
    const method = typeof type === 'string' ? type : (type as { method?: string } | undefined)?.method;
    const check = method !== undefined ? checks[method] : undefined;
    if (!check || typeof handler !== 'function') return (connection.onRequest as (...a: unknown[]) => unknown)(type, handler);
    const guarded: Handler = (params, ...rest) => {
      try {
        check(params);
      } catch (e) {
        if (e instanceof ResponseError) throw e;
        throw invalidParams(method!, (e as Error)?.message ?? String(e));
      }
      return handler(params, ...rest);
    };
    return (connection.onRequest as (...a: unknown[]) => unknown)(type, guarded);
  };
  return new Proxy(connection, {
    get(target, prop) {
      if (prop === 'onRequest') return onRequest;
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as Handler).bind(target) : v;
    },
  });
}

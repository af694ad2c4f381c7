/**
 * Hover on a config key or value: the schema's description and default for every key; on `model`,
 * `adapter`, `rank`, `alpha`, `targets` (and their items), `rank_pattern`, `batch_size` and `max_length`
 * also what the config costs (the numbers `loraxs params` gives), computed from config.json and the
 * safetensors headers without loading weights. In an untrusted workspace only the schema text is shown.
 */
import type { Hover } from 'vscode-languageserver/node';
import { LoraxsError } from '../errors';
import { schemaAt } from '../config/schema';
import { formatKeyPath, parseWithPositions } from '../config/yaml_positions';
import { keyMatches } from '../loraxs/targets';
import { computeParams } from '../loraxs/param_counts';
import { configForParams } from './params_input';
import { paramsMarkdown } from './params_markdown';
import { modelInfo } from './model_info';
import { nodeAtOffset } from './yaml_cursor';

/** Key paths (numbers stripped) whose hover shows the parameter report. */
const PARAMS_KEYS = new Set(['model', 'adapter', 'adapter.rank', 'adapter.alpha', 'adapter.targets', 'adapter.rank_pattern',
  'training.batch_size', 'training.max_length']);

function schemaText(path: (string | number)[]): string {
  const heading = `**${formatKeyPath(path)}**`;
  let schema = schemaAt(path);
  if (!schema) return `${heading}\n\nnot a key of LoRA-XS configs`;
  // List items and rank_pattern entries are described by their list or map.
  for (let k = path.length - 1; k > 0 && !schema?.description; k--) schema = schemaAt(path.slice(0, k));
  const parts = [heading];
  if (schema?.description) parts.push(schema.description);
  if (schema && schema.default !== undefined) parts.push(`Default: \`${JSON.stringify(schema.default)}\``);
  return parts.join('\n\n');
}

/** Which modules a `targets` item selects, by their full names. */
function targetItemText(text: string, file: string, key: string): string | null {
  const c = configForParams(text, file);
  if (c instanceof LoraxsError) return null;
  const info = modelInfo(c.input.model, c.input.headers);
  if (info instanceof LoraxsError) return null;
  const matched = info.modules.filter((m) => keyMatches(m.name, key));
  if (matched.length === 0) return `\`${key}\` matches no module of this model`;
  const shown = matched.slice(0, 4).map((m) => `\`${m.name}\` (${m.outFeatures} × ${m.inFeatures})`).join(', ');
  return `\`${key}\` matches ${matched.length} module${matched.length === 1 ? '' : 's'}: ${shown}${matched.length > 4 ? ', ...' : ''}`;
}

function paramsText(text: string, file: string): string {
  const c = configForParams(text, file);
  if (c instanceof LoraxsError) return `Parameters cannot be counted: ${c.message}`;
  try {
    return paramsMarkdown(computeParams(c.input), { rank: c.input.adapter.rank, alpha: c.alpha });
  } catch (e) {
    if (e instanceof LoraxsError) return `Parameters cannot be counted: ${e.message}`;
    throw e;
  }
}

/** The hover at `offset` of a config's text, or null where there is nothing to say. */
export function hoverAt(text: string, file: string, offset: number, trusted: boolean): Hover | null {
  const pd = parseWithPositions(text);
  const node = nodeAtOffset(pd, offset);
  if (!node || node.path.length === 0) return null;
  const sections = [schemaText(node.path)];
  const named = node.path.filter((p): p is string => typeof p === 'string');
  const isTargetItem = named.join('.') === 'adapter.targets' && typeof node.path[node.path.length - 1] === 'number';
  if (trusted) {
    if (isTargetItem) {
      const item = pd.doc.getIn(node.path);
      const line = typeof item === 'string' ? targetItemText(text, file, item) : null;
      if (line) sections.push(line);
    }
    const paramsKey = named.slice(0, 2).join('.');
    if (PARAMS_KEYS.has(paramsKey) || PARAMS_KEYS.has(named.join('.'))) sections.push(paramsText(text, file));
  }
  return { contents: { kind: 'markdown', value: sections.join('\n\n---\n\n') }, range: node.range };
}

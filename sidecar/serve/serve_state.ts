/**
 * What the routes of one server share: the base model, the adapter registry, the batchers, the metrics,
 * and how a request's `model` resolves (an adapter folder under --adapters, or the base model).
 */
import type { ChatTemplate } from '../io/chat_template';
import { resolveChatTemplate } from '../io/chat_template';
import type { AdapterRegistry, ResidentAdapter } from './adapter_registry';
import type { BaseModel } from './base_model';
import type { ClassifyBatcher } from './classify_batcher';
import type { GenerationScheduler } from './generation_scheduler';
import type { ServeMetrics } from './metrics';
import { HttpError } from './http_error';

export interface ServeState {
  base: BaseModel;
  registry: AdapterRegistry;
  generation: GenerationScheduler;
  classify: ClassifyBatcher;
  metrics: ServeMetrics;
  /** --chat-template: used for every model instead of the adapter's or the base model's. */
  chatTemplateFile?: string;
  startedAt: number;
}

/** The adapter a request's `model` names, or null for the base model. */
export function resolveModel(state: ServeState, model: unknown): ResidentAdapter | null {
  if (typeof model !== 'string' || model === '') throw new HttpError(400, 'body.model must be an adapter name (a folder under --adapters) or the base model\'s name');
  if (state.base.names.includes(model)) return null;
  return state.registry.get(model);
}

/** The chat template for a model: --chat-template, else the adapter's chat_template.jinja, else the base model's. */
export function chatTemplateFor(state: ServeState, adapter: ResidentAdapter | null): ChatTemplate {
  if (state.chatTemplateFile) return resolveChatTemplate({ modelDir: state.base.dir, file: state.chatTemplateFile });
  return adapter ? adapter.chatTemplate() : resolveChatTemplate({ modelDir: state.base.dir });
}

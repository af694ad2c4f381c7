/**
 * `loraxs export`: an adapter folder in another layout (see loraxs/export.ts for the formats).
 */
export const EXPORT_FORMATS = ['peft-lora', 'loraxs-official', 'loraxs-factors'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];
import type { EngineEvents } from './events';
export async function exportRun(_o: { adapterDir: string; modelDir?: string; format: ExportFormat; outDir: string }, _e?: EngineEvents): Promise<string> {
  throw new Error('not yet');
}

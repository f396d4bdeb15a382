import type { Pipeline } from '../operators/pipeline.js';

/**
 * Every pipeline Eddy runs, by name, built with default settings and inert sinks so it can describe itself without
 * connecting to anything.
 */
export const catalogue: Readonly<Record<string, () => Promise<Pipeline<never, unknown>>>> = {};

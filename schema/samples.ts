import { z } from 'zod';
import { BEHAVIOUR_TYPES, LIMITS } from './events.js';

/**
 * The `samples` topic's wire type: one served impression, labelled, with the feature values it was scored with at
 * serving time (point in time). Feature names travel with every sample so a sample is self-describing: a trainer
 * needs no side channel to know which value is which, and a change of the feature set cannot silently shift columns.
 */

/** Most features one sample may carry. */
export const MAX_SAMPLE_FEATURES = 4096;

const id = z.string().min(1).max(LIMITS.idLength);
const timestamp = z.number().int().nonnegative().max(8.64e15);

export const labelledSampleSchema = z
  .strictObject({
    /** `<requestId>:<position>`, the impression's id: unique per sample, for de-duplication downstream. */
    id,
    requestId: id,
    userId: id,
    itemId: id,
    /** 0-based slot the item was shown in. */
    position: z.number().int().nonnegative().max(100_000),
    /** Event time of the impression (ms). */
    ts: timestamp,
    /** 1 when the impression got a positive outcome within the attribution window, 0 when it is a negative. */
    label: z.union([z.literal(0), z.literal(1)]),
    /** 1 when one of the outcomes was a conversion (a separate target); the label counts it as positive too. */
    converted: z.union([z.literal(0), z.literal(1)]),
    /** Distinct behaviour types attributed to the impression, in order of first arrival. */
    outcomes: z.array(z.enum(BEHAVIOUR_TYPES)).max(BEHAVIOUR_TYPES.length),
    /** Time (ms) the features were looked up as of: the serving time. */
    featuresTs: timestamp,
    names: z.array(z.string().min(1).max(LIMITS.stringLength)).max(MAX_SAMPLE_FEATURES),
    values: z.array(z.number().finite()).max(MAX_SAMPLE_FEATURES),
  })
  .refine((s) => s.names.length === s.values.length, {
    message: 'names and values must have the same length',
    path: ['values'],
  });

export type LabelledSample = z.output<typeof labelledSampleSchema>;

export type SampleParseResult =
  | { readonly ok: true; readonly value: LabelledSample }
  | { readonly ok: false; readonly error: { readonly field: string; readonly message: string } };

/** JSON text (or an already parsed value) to a LabelledSample, with the offending field named on failure. */
export function parseLabelledSample(raw: string | unknown): SampleParseResult {
  let value: unknown = raw;
  if (typeof raw === 'string') {
    if (raw.length > LIMITS.payloadBytes * 4) {
      return { ok: false, error: { field: '', message: `payload of ${raw.length} bytes exceeds ${LIMITS.payloadBytes * 4}` } };
    }
    try {
      value = JSON.parse(raw) as unknown;
    } catch (error) {
      return { ok: false, error: { field: '', message: `malformed JSON: ${(error as Error).message}` } };
    }
  }
  const result = labelledSampleSchema.safeParse(value);
  if (result.success) return { ok: true, value: result.data };
  const issue = result.error.issues[0]!;
  return { ok: false, error: { field: issue.path.map(String).join('.'), message: issue.message } };
}

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

const SAMPLE_FIELDS = new Set(Object.keys(labelledSampleSchema.shape));
const OUTCOME_TYPES = new Set<unknown>(BEHAVIOUR_TYPES);

const isId = (value: unknown): boolean => typeof value === 'string' && value.length >= 1 && value.length <= LIMITS.idLength;
const isTimestamp = (value: unknown): boolean => Number.isSafeInteger(value) && (value as number) >= 0 && (value as number) <= 8.64e15;
const isBit = (value: unknown): boolean => value === 0 || value === 1;

/** The names of the last sample accepted: a trainer's samples all carry the same list, so it is checked once. */
let acceptedNames: readonly string[] = [];

/**
 * Whether `value` is a sample the schema accepts, checked field by field without the schema. Every sample the trainer
 * and the export read passes here, and the schema's per-element checks of 40-odd names and values were most of the
 * trainer's time. It never accepts what the schema refuses (a test holds it to that); anything it refuses goes to the
 * schema, which names the offending field.
 */
function isWellFormedSample(value: unknown): value is LabelledSample {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const sample = value as Record<string, unknown>;
  let fields = 0;
  for (const key in sample) {
    if (!Object.hasOwn(sample, key) || !SAMPLE_FIELDS.has(key)) return false;
    fields++;
  }
  if (fields !== SAMPLE_FIELDS.size) return false;
  const { id, requestId, userId, itemId, position, ts, label, converted, outcomes, featuresTs, names, values } = sample;
  if (!isId(id) || !isId(requestId) || !isId(userId) || !isId(itemId)) return false;
  if (!Number.isSafeInteger(position) || (position as number) < 0 || (position as number) > 100_000) return false;
  if (!isTimestamp(ts) || !isTimestamp(featuresTs) || !isBit(label) || !isBit(converted)) return false;
  if (!Array.isArray(outcomes) || outcomes.length > BEHAVIOUR_TYPES.length) return false;
  for (let i = 0; i < outcomes.length; i++) if (!OUTCOME_TYPES.has(outcomes[i])) return false;
  if (!Array.isArray(names) || !Array.isArray(values) || names.length > MAX_SAMPLE_FEATURES || values.length !== names.length) return false;
  if (!sameStrings(names, acceptedNames)) {
    for (let i = 0; i < names.length; i++) {
      const name: unknown = names[i];
      if (typeof name !== 'string' || name.length < 1 || name.length > LIMITS.stringLength) return false;
    }
    acceptedNames = [...(names as string[])];
  }
  for (let i = 0; i < values.length; i++) {
    const v: unknown = values[i];
    if (typeof v !== 'number' || !Number.isFinite(v)) return false;
  }
  return true;
}

function sameStrings(a: readonly unknown[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

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
  if (isWellFormedSample(value)) return { ok: true, value };
  const result = labelledSampleSchema.safeParse(value);
  if (result.success) return { ok: true, value: result.data };
  const issue = result.error.issues[0]!;
  return { ok: false, error: { field: issue.path.map(String).join('.'), message: issue.message } };
}

import { z } from 'zod';
import { remembered } from './remembered.js';

/**
 * Eddy's wire model: behaviour events, item and user metadata, recommendation requests and responses. JSON on the
 * wire, validated at every entry point with errors that name the field. Sizes are bounded so one event can never
 * take a pipeline's memory, and map keys that could reach an object's prototype are refused.
 */

export const LIMITS = {
  /** Longest raw JSON payload of one event or request. */
  payloadBytes: 64 * 1024,
  idLength: 256,
  stringLength: 1024,
  arrayLength: 256,
  /** Keys in `fields`, `context` or `filters.fields`. */
  mapKeys: 64,
  candidates: 2000,
  count: 500,
} as const;

export const BEHAVIOUR_TYPES = ['impression', 'click', 'view', 'rating', 'like', 'dislike', 'add_to_cart', 'purchase'] as const;
export type BehaviourType = (typeof BEHAVIOUR_TYPES)[number];

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

export type Scalar = string | number | boolean;
export type FieldValue = Scalar | readonly string[] | readonly number[];
/** A map with no prototype, so no key can shadow or reach Object.prototype. */
export type FieldMap = Readonly<Record<string, FieldValue>>;

const id = z.string().min(1).max(LIMITS.idLength);
const text = z.string().max(LIMITS.stringLength);
/** Latest event time (ms), the largest a JavaScript Date holds. */
const MAX_TS = 8.64e15;
const MAX_POSITION = 100_000;
const timestamp = z.number().int().nonnegative().max(MAX_TS);
const finite = z.number().finite();

const fieldValue = z.union([
  text,
  finite,
  z.boolean(),
  z.array(text).max(LIMITS.arrayLength),
  z.array(finite).max(LIMITS.arrayLength),
]);

/** A bounded string-keyed map, copied into a null-prototype object after every key has been checked. */
function boundedMap<V extends z.ZodType>(value: V) {
  return z
    .custom<Record<string, unknown>>(
      (raw) => typeof raw === 'object' && raw !== null && !Array.isArray(raw),
      { message: 'expected an object' },
    )
    .superRefine((raw, ctx) => {
      const keys = Object.keys(raw);
      if (keys.length > LIMITS.mapKeys) {
        ctx.addIssue({ code: 'custom', message: `at most ${LIMITS.mapKeys} keys, got ${keys.length}` });
      }
      for (const key of keys) {
        if (FORBIDDEN_KEYS.has(key)) ctx.addIssue({ code: 'custom', message: `key "${key}" is not allowed`, path: [key] });
        else if (key.length === 0 || key.length > LIMITS.idLength) {
          ctx.addIssue({ code: 'custom', message: `keys must be 1 to ${LIMITS.idLength} characters`, path: [key] });
        }
      }
    })
    .pipe(z.record(z.string(), value))
    .transform((record) => Object.assign(Object.create(null) as Record<string, z.output<V>>, record));
}

export const fieldMapSchema = boundedMap(fieldValue);

export const behaviourEventSchema = z.strictObject({
  id,
  type: z.enum(BEHAVIOUR_TYPES),
  userId: id,
  itemId: id,
  ts: timestamp,
  requestId: id.optional(),
  position: z.number().int().nonnegative().max(MAX_POSITION).optional(),
  value: finite.optional(),
  context: fieldMapSchema.optional(),
});

export const itemEventSchema = z.strictObject({
  type: z.literal('item'),
  itemId: id,
  ts: timestamp,
  fields: fieldMapSchema,
});

export const userEventSchema = z.strictObject({
  type: z.literal('user'),
  userId: id,
  ts: timestamp,
  fields: fieldMapSchema,
});

export const filtersSchema = z.strictObject({
  /** Items never to return. */
  excludeItems: z.array(id).max(LIMITS.candidates).optional(),
  /** Item metadata that must match: a field equals the value, or one of the values. */
  fields: boundedMap(z.union([text, finite, z.boolean(), z.array(z.union([text, finite])).max(LIMITS.arrayLength)])).optional(),
});

export const recommendationRequestSchema = z.strictObject({
  requestId: id,
  userId: id,
  count: z.number().int().min(1).max(LIMITS.count),
  context: fieldMapSchema.optional(),
  candidates: z.array(id).max(LIMITS.candidates).optional(),
  filters: filtersSchema.optional(),
  explain: z.boolean().optional(),
});

export const recommendedItemSchema = z.strictObject({
  itemId: id,
  score: finite,
  source: z.string().max(LIMITS.idLength),
  explain: z.record(z.string(), z.unknown()).optional(),
});

export const recommendationResponseSchema = z.strictObject({
  requestId: id,
  userId: id,
  items: z.array(recommendedItemSchema).max(LIMITS.count),
  model: z.string().max(LIMITS.idLength),
  variant: z.string().max(LIMITS.idLength),
  tookMs: z.number().nonnegative(),
});

export type BehaviourEvent = z.output<typeof behaviourEventSchema>;
export type ItemEvent = z.output<typeof itemEventSchema>;
export type UserEvent = z.output<typeof userEventSchema>;
export type Filters = z.output<typeof filtersSchema>;
export type RecommendationRequest = z.output<typeof recommendationRequestSchema>;
export type RecommendedItem = z.output<typeof recommendedItemSchema>;
export type RecommendationResponse = z.output<typeof recommendationResponseSchema>;
/** Anything that arrives on the `events`, `items` or `users` topics. */
export type InputEvent = BehaviourEvent | ItemEvent | UserEvent;

export interface ValidationError {
  /** Dotted path of the offending field, or `''` for the payload as a whole. */
  readonly field: string;
  readonly message: string;
}

export type Validated<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: ValidationError };

function validate<T>(schema: z.ZodType<T>, raw: unknown): Validated<T> {
  const result = schema.safeParse(raw);
  if (result.success) return { ok: true, value: result.data };
  const issue = result.error.issues[0]!;
  return { ok: false, error: { field: issue.path.map(String).join('.'), message: issue.message } };
}

function parseJson(raw: string): Validated<unknown> {
  if (raw.length > LIMITS.payloadBytes) {
    return { ok: false, error: { field: '', message: `payload of ${raw.length} bytes exceeds ${LIMITS.payloadBytes}` } };
  }
  try {
    return { ok: true, value: JSON.parse(raw) as unknown };
  } catch (error) {
    return { ok: false, error: { field: '', message: `malformed JSON: ${(error as Error).message}` } };
  }
}

function withJson<T>(validator: (value: unknown) => Validated<T>): (raw: string | unknown) => Validated<T> {
  return (raw) => {
    if (typeof raw !== 'string') return validator(raw);
    const parsed = parseJson(raw);
    return parsed.ok ? validator(parsed.value) : parsed;
  };
}

const BEHAVIOUR_TYPE_SET: ReadonlySet<unknown> = new Set(BEHAVIOUR_TYPES);
const BEHAVIOUR_KEYS: ReadonlySet<string> = new Set(['id', 'type', 'userId', 'itemId', 'ts', 'requestId', 'position', 'value']);

const isId = (value: unknown): value is string => typeof value === 'string' && value.length >= 1 && value.length <= LIMITS.idLength;
const isWhole = (value: unknown, max: number): value is number =>
  typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= max;

/**
 * The behaviour event `raw` is, when it has the everyday shape (no `context`) and passes every rule of
 * `behaviourEventSchema`; otherwise undefined, and the schema decides. Every served item comes back as an impression
 * that three pipelines decode, and the schema's general machinery allocated about 3.6 KB per event: about a
 * tenth of what a request allocates. The result is built like the schema's, keys in its order.
 */
function everydayBehaviourEvent(raw: object): BehaviourEvent | undefined {
  const value = raw as Record<string, unknown>;
  for (const key in value) if (!BEHAVIOUR_KEYS.has(key) || !Object.hasOwn(value, key)) return undefined;
  const { id, type, userId, itemId, ts, requestId, position } = value;
  if (!isId(id) || !BEHAVIOUR_TYPE_SET.has(type) || !isId(userId) || !isId(itemId) || !isWhole(ts, MAX_TS)) return undefined;
  const event: { -readonly [K in keyof BehaviourEvent]: BehaviourEvent[K] } = { id, type: type as BehaviourType, userId, itemId, ts };
  if ('requestId' in value) {
    if (!isId(requestId)) return undefined;
    event.requestId = requestId;
  }
  if ('position' in value) {
    if (!isWhole(position, MAX_POSITION)) return undefined;
    event.position = position;
  }
  if ('value' in value) {
    if (typeof value.value !== 'number' || !Number.isFinite(value.value)) return undefined;
    event.value = value.value;
  }
  return event;
}

const inputBySchema = {
  item: itemEventSchema,
  user: userEventSchema,
} as const;

/**
 * `parse` with its results for payload texts remembered (see `remembered`). In one process several pipelines decode
 * the same record (features, serving state and samples all read `events`), and the log hands each the same string,
 * whose hash V8 keeps on the string itself; the later ones then cost a map lookup instead of a parse and a validation.
 * Results are shared, so consumers must not mutate a decoded event (none does: operators derive new state from
 * events).
 */
function rememberedParse<T>(parse: (raw: string | unknown) => Validated<T>, capacity: number): (raw: string | unknown) => Validated<T> {
  const byText = remembered(parse, capacity);
  return (raw) => (typeof raw === 'string' ? byText(raw) : parse(raw));
}

/** Any input event: a behaviour event, or item or user metadata, told apart by `type`. */
export const parseInputEvent = rememberedParse(withJson((value): Validated<InputEvent> => {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, error: { field: '', message: 'expected a JSON object' } };
  }
  const type = (value as { type?: unknown }).type;
  if (type === 'item' || type === 'user') return validate<InputEvent>(inputBySchema[type], value);
  return validateBehaviourEvent(value);
}), 8192);

function validateBehaviourEvent(value: unknown): Validated<BehaviourEvent> {
  const everyday = typeof value === 'object' && value !== null && !Array.isArray(value) ? everydayBehaviourEvent(value) : undefined;
  return everyday ? { ok: true, value: everyday } : validate(behaviourEventSchema, value);
}

export const parseBehaviourEvent = withJson(validateBehaviourEvent);
export const parseItemEvent = withJson((value) => validate(itemEventSchema, value));
export const parseUserEvent = withJson((value) => validate(userEventSchema, value));
export const parseRecommendationRequest = withJson((value) => validate(recommendationRequestSchema, value));
export const parseRecommendationResponse = withJson((value) => validate(recommendationResponseSchema, value));

export function isBehaviourEvent(event: InputEvent): event is BehaviourEvent {
  return event.type !== 'item' && event.type !== 'user';
}

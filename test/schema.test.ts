import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  behaviourEventSchema,
  LIMITS,
  parseBehaviourEvent,
  parseInputEvent,
  parseRecommendationRequest,
  type ItemEvent,
} from '../schema/events.js';
import { labelledSampleSchema, parseLabelledSample } from '../schema/samples.js';

const click = { id: 'e1', type: 'click', userId: 'u1', itemId: 'i1', ts: 1_700_000_000_000 };

function rejected(raw: unknown) {
  const result = parseInputEvent(typeof raw === 'string' ? raw : JSON.stringify(raw));
  if (result.ok) throw new Error(`expected a rejection for ${JSON.stringify(raw)}`);
  return result.error;
}

describe('event validation', () => {
  it('accepts every behaviour type and item and user metadata', () => {
    for (const type of ['impression', 'click', 'view', 'rating', 'like', 'dislike', 'add_to_cart', 'purchase']) {
      expect(parseInputEvent(JSON.stringify({ ...click, type })).ok).toBe(true);
    }
    const item = parseInputEvent({ type: 'item', itemId: 'i1', ts: 1, fields: { genres: ['Drama'], year: 1999 } });
    expect(item.ok && (item.value as ItemEvent).fields.genres).toEqual(['Drama']);
    expect(parseInputEvent({ type: 'user', userId: 'u1', ts: 1, fields: { country: 'NL' } }).ok).toBe(true);
  });

  it('names the field and what was expected', () => {
    expect(rejected({ ...click, ts: 'yesterday' })).toMatchObject({ field: 'ts', message: expect.stringMatching(/number/) });
    expect(rejected({ ...click, userId: undefined }).field).toBe('userId');
    expect(rejected({ ...click, type: 'hover' }).field).toBe('type');
    expect(rejected({ ...click, position: -1 }).field).toBe('position');
    expect(rejected({ ...click, extra: 1 }).message).toMatch(/extra/);
    expect(rejected({ type: 'item', itemId: 'i', ts: 1, fields: { tags: [{}] } }).field).toMatch(/^fields\.tags/);
  });

  it('rejects malformed JSON and non-objects', () => {
    expect(rejected('{"id":').message).toMatch(/malformed JSON/);
    expect(rejected('[1,2]').message).toMatch(/object/);
    expect(rejected('null').message).toMatch(/object/);
  });

  it('bounds payloads, strings, arrays and maps', () => {
    expect(rejected(' '.repeat(LIMITS.payloadBytes + 1)).message).toMatch(/exceeds/);
    expect(rejected({ ...click, itemId: 'x'.repeat(LIMITS.idLength + 1) }).field).toBe('itemId');
    const manyKeys = Object.fromEntries(Array.from({ length: LIMITS.mapKeys + 1 }, (_, i) => [`k${i}`, i]));
    expect(rejected({ type: 'user', userId: 'u', ts: 1, fields: manyKeys }).message).toMatch(/at most/);
    const longList = Array.from({ length: LIMITS.arrayLength + 1 }, () => 'g');
    expect(rejected({ type: 'item', itemId: 'i', ts: 1, fields: { genres: longList } }).field).toBe('fields.genres');
  });

  it('refuses keys that could reach an object’s prototype', () => {
    for (const key of ['__proto__', 'constructor', 'prototype']) {
      const raw = `{"type":"item","itemId":"i","ts":1,"fields":{"${key}":{"polluted":true}}}`;
      expect(rejected(raw)).toMatchObject({ field: `fields.${key}`, message: expect.stringMatching(/not allowed/) });
      expect(rejected(`{"id":"e","type":"click","userId":"u","itemId":"i","ts":1,"context":{"${key}":"x"}}`).field).toBe(
        `context.${key}`,
      );
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('returns maps without a prototype', () => {
    const result = parseInputEvent({ ...click, context: { device: 'ios' } });
    expect(result.ok).toBe(true);
    if (result.ok && 'context' in result.value) expect(Object.getPrototypeOf(result.value.context)).toBeNull();
  });

  it('decodes behaviour events exactly as the schema does, on its fast path and off it', () => {
    const idLike = fc.oneof(fc.string({ maxLength: 4 }), fc.constant('x'.repeat(LIMITS.idLength)), fc.constant('x'.repeat(LIMITS.idLength + 1)), fc.integer());
    const wholeLike = (max: number) => fc.oneof(fc.integer({ min: -2, max: 3 }), fc.constantFrom(max, max + 1, 0.5, -0, Number.NaN, Number.POSITIVE_INFINITY, '7'));
    const field = {
      id: idLike,
      type: fc.oneof(fc.constantFrom('impression', 'click', 'purchase', 'item', 'hover'), fc.integer()),
      userId: idLike,
      itemId: idLike,
      ts: wholeLike(8.64e15),
      requestId: fc.oneof(idLike, fc.constant(undefined)),
      position: wholeLike(100_000),
      value: fc.oneof(fc.double(), fc.constant('1')),
      context: fc.oneof(fc.constant({ variant: 'a' }), fc.constant({ __proto__: 1 }), fc.constant('a')),
      extra: fc.constant(1),
    };
    const valid = { id: fc.constant('e'), type: fc.constant('impression'), userId: fc.constant('u'), itemId: fc.constant('i'), ts: fc.constant(5) };
    // Mostly valid events with a few fields replaced or added, so both paths and every rule get exercised.
    const event = fc
      .tuple(
        fc.record(valid),
        fc.array(fc.oneof(...Object.entries(field).map(([key, value]) => (value as fc.Arbitrary<unknown>).map((v) => [key, v] as const))), { maxLength: 3 }),
        fc.oneof(fc.constant([]), fc.constant([]), fc.subarray(Object.keys(valid), { maxLength: 1 })),
      )
      .map(([base, changes, dropped]) => {
        const out: Record<string, unknown> = { ...base, ...Object.fromEntries(changes) };
        for (const key of dropped) delete out[key];
        return out;
      });
    let accepted = 0;
    fc.assert(
      fc.property(event, (raw) => {
        const expected = behaviourEventSchema.safeParse(raw);
        if (expected.success) accepted++;
        // parseInputEvent takes item and user metadata by their own schemas.
        const decoders = raw.type === 'item' || raw.type === 'user' ? [parseBehaviourEvent] : [parseBehaviourEvent, parseInputEvent];
        for (const actual of decoders.map((decode) => decode(raw))) {
          expect(actual.ok).toBe(expected.success);
          if (actual.ok && expected.success) {
            expect(Object.keys(actual.value)).toEqual(Object.keys(expected.data));
            expect(actual.value).toEqual(expected.data);
          } else if (!actual.ok && !expected.success) {
            expect(actual.error.field).toBe(expected.error.issues[0]!.path.map(String).join('.'));
          }
        }
      }),
      { numRuns: 3000 },
    );
    expect(accepted).toBeGreaterThan(100);
  });

  it('validates recommendation requests', () => {
    expect(parseRecommendationRequest({ requestId: 'r', userId: 'u', count: 10, filters: { excludeItems: ['i1'] } }).ok).toBe(true);
    const tooMany = parseRecommendationRequest({ requestId: 'r', userId: 'u', count: LIMITS.count + 1 });
    expect(!tooMany.ok && tooMany.error.field).toBe('count');
  });
});

describe('decoding a payload several pipelines read', () => {
  const payload = (n: number) => JSON.stringify({ id: `e${n}`, type: 'click', userId: 'u', itemId: `i${n}`, ts: 1_700_000_000_000 + n });

  it('decodes a repeated payload once, and still decodes correctly after many others', () => {
    const first = payload(0);
    const decoded = parseInputEvent(first);
    expect(parseInputEvent(first)).toBe(decoded);
    for (let n = 1; n <= 20_000; n++) expect(parseInputEvent(payload(n))).toMatchObject({ ok: true, value: { itemId: `i${n}` } });
    // Long gone from memory: decoded again, to the same event.
    const again = parseInputEvent(first);
    expect(again).not.toBe(decoded);
    expect(again).toEqual(decoded);
    const recent = payload(20_000);
    expect(parseInputEvent(recent)).toBe(parseInputEvent(recent));
  });
});

describe('sample validation', () => {
  it('accepts exactly the samples the schema accepts, on its fast path and off it', () => {
    const idLike = fc.oneof(fc.string({ maxLength: 3 }), fc.constant('x'.repeat(LIMITS.idLength)), fc.constant('x'.repeat(LIMITS.idLength + 1)), fc.integer());
    const wholeLike = (max: number) => fc.oneof(fc.integer({ min: -2, max: 3 }), fc.constantFrom(max, max + 1, 0.5, -0, Number.NaN, 2 ** 53 + 2, '7'));
    const nameLike = fc.oneof(fc.constantFrom('a', 'b', ''), fc.constant('n'.repeat(LIMITS.stringLength + 1)), fc.integer());
    const valueLike = fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, '1', null));
    const field = {
      id: idLike,
      requestId: idLike,
      userId: idLike,
      itemId: idLike,
      position: wholeLike(100_000),
      ts: wholeLike(8.64e15),
      featuresTs: wholeLike(8.64e15),
      label: fc.constantFrom(0, 1, 2, -0, true, '1'),
      converted: fc.constantFrom(0, 1, 0.5, null),
      outcomes: fc.oneof(fc.array(fc.constantFrom('click', 'purchase', 'hover', 3), { maxLength: 9 }), fc.constant('click')),
      names: fc.oneof(fc.array(nameLike, { maxLength: 3 }), fc.constant(['a', 'b']), fc.constant('a')),
      values: fc.oneof(fc.array(valueLike, { maxLength: 3 }), fc.constant([0.5, -1])),
      extra: fc.constant(1),
    };
    const valid = {
      id: 'r:0', requestId: 'r', userId: 'u', itemId: 'i', position: 0, ts: 5, label: 1, converted: 0,
      outcomes: ['click'], featuresTs: 5, names: ['a', 'b'], values: [0.5, -1],
    };
    // Valid samples with a few fields replaced, added or dropped, so that both paths and every rule get exercised.
    const sample = fc
      .tuple(
        fc.array(fc.oneof(...Object.entries(field).map(([key, value]) => (value as fc.Arbitrary<unknown>).map((v) => [key, v] as const))), { maxLength: 3 }),
        fc.oneof(fc.constant([]), fc.constant([]), fc.subarray(Object.keys(valid), { maxLength: 1 })),
      )
      .map(([changes, dropped]) => {
        const out: Record<string, unknown> = { ...valid, ...Object.fromEntries(changes) };
        for (const key of dropped) delete out[key];
        return out;
      });
    const agrees = (actual: ReturnType<typeof parseLabelledSample>, value: unknown): boolean => {
      const expected = labelledSampleSchema.safeParse(value);
      expect(actual.ok).toBe(expected.success);
      if (actual.ok && expected.success) expect(actual.value).toEqual(expected.data);
      if (!actual.ok && !expected.success) expect(actual.error.field).toBe(expected.error.issues[0]!.path.map(String).join('.'));
      return expected.success;
    };
    let accepted = 0;
    fc.assert(
      fc.property(sample, (raw) => {
        if (agrees(parseLabelledSample(raw), raw)) accepted++;
        // As read off the topic. JSON turns NaN and Infinity into null, which the schema refuses as well.
        const text = JSON.stringify(raw);
        agrees(parseLabelledSample(text), JSON.parse(text));
      }),
      { numRuns: 3000 },
    );
    expect(accepted).toBeGreaterThan(100);
  });
});

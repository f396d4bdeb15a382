import { describe, expect, it } from 'vitest';
import {
  LIMITS,
  parseInputEvent,
  parseRecommendationRequest,
  type ItemEvent,
} from '../schema/events.js';

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

  it('validates recommendation requests', () => {
    expect(parseRecommendationRequest({ requestId: 'r', userId: 'u', count: 10, filters: { excludeItems: ['i1'] } }).ok).toBe(true);
    const tooMany = parseRecommendationRequest({ requestId: 'r', userId: 'u', count: LIMITS.count + 1 });
    expect(!tooMany.ok && tooMany.error.field).toBe('count');
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { createHttpServer, type EddyService } from '../connectors/http.js';
import { parseInputEvent, type RecommendationRequest } from '../schema/events.js';

/** A fake service: the HTTP layer's contract is tested here; the real service has its own tests. */
function fakeService(): EddyService & { received: unknown[]; requests: RecommendationRequest[] } {
  const received: unknown[] = [];
  const requests: RecommendationRequest[] = [];
  return {
    received,
    requests,
    async ingest(events) {
      const rejected: { index: number; field: string; error: string }[] = [];
      events.forEach((event, index) => {
        const result = parseInputEvent(event);
        if (result.ok) received.push(result.value);
        else rejected.push({ index, field: result.error.field, error: result.error.message });
      });
      return { accepted: events.length - rejected.length, rejected };
    },
    async recommend(request) {
      requests.push(request);
      if (request.userId === 'explode') throw new Error('secret internal detail');
      return { requestId: request.requestId, userId: request.userId, items: [], model: 'm', variant: 'control', tookMs: 0 };
    },
    async similar(itemId) {
      return itemId === 'known' ? [{ itemId: 'other', score: 1, source: 'covisitation' }] : undefined;
    },
    experiment: (id) => (id === 'exp' ? { id } : undefined),
    readiness: async () => ({ ready: true, checks: { store: { ok: true } } }),
    metrics: async () => ({ contentType: 'text/plain; version=0.0.4', body: 'eddy_up 1\n' }),
  };
}

const click = { id: 'e1', type: 'click', userId: 'u1', itemId: 'i1', ts: 1_700_000_000_000 };

describe('HTTP API', () => {
  let app: FastifyInstance;
  let service: ReturnType<typeof fakeService>;

  beforeAll(async () => {
    service = fakeService();
    app = await createHttpServer(service, { authToken: 'sesame', bodyLimitBytes: 64 * 1024, maxEventsPerRequest: 100 });
  });
  afterAll(() => app.close());

  const auth = { authorization: 'Bearer sesame' };

  it('accepts one event or an array, reporting each rejected event with its field', async () => {
    const one = await app.inject({ method: 'POST', url: '/v1/events', headers: auth, payload: click });
    expect(one.statusCode).toBe(202);
    expect(one.json()).toEqual({ accepted: 1, rejected: [] });
    const many = await app.inject({
      method: 'POST',
      url: '/v1/events',
      headers: auth,
      payload: [click, { ...click, ts: 'soon' }, { ...click, id: 'e2' }],
    });
    expect(many.statusCode).toBe(202);
    expect(many.json()).toEqual({ accepted: 2, rejected: [{ index: 1, field: 'ts', error: expect.any(String) }] });
  });

  it('needs the bearer token on write and admin endpoints only', async () => {
    const missing = await app.inject({ method: 'POST', url: '/v1/events', payload: click });
    expect(missing.statusCode).toBe(401);
    expect(missing.json()).toEqual({ error: expect.any(String), field: 'authorization' });
    const wrong = await app.inject({ method: 'GET', url: '/v1/experiments/exp', headers: { authorization: 'Bearer nope' } });
    expect(wrong.statusCode).toBe(401);
    const read = await app.inject({ method: 'POST', url: '/v1/recommend', payload: { userId: 'u1' } });
    expect(read.statusCode).toBe(200);
  });

  it('answers malformed JSON, oversized bodies and too many events with JSON 4xx errors', async () => {
    const malformed = await app.inject({
      method: 'POST',
      url: '/v1/events',
      headers: { ...auth, 'content-type': 'application/json' },
      payload: '{"id":',
    });
    expect(malformed.statusCode).toBe(400);
    expect(malformed.json()).toMatchObject({ error: expect.any(String) });
    const huge = await app.inject({
      method: 'POST',
      url: '/v1/events',
      headers: auth,
      payload: [{ ...click, context: { note: 'x'.repeat(70 * 1024) } }],
    });
    expect(huge.statusCode).toBe(413);
    expect(huge.json()).toMatchObject({ error: expect.any(String) });
    const tooMany = await app.inject({ method: 'POST', url: '/v1/events', headers: auth, payload: Array(101).fill(click) });
    expect(tooMany.statusCode).toBe(413);
    const empty = await app.inject({ method: 'POST', url: '/v1/events', headers: auth, payload: [] });
    expect(empty.statusCode).toBe(400);
  });

  it('validates recommend requests and fills in the id and count', async () => {
    const bad = await app.inject({ method: 'POST', url: '/v1/recommend', payload: { userId: 'u1', count: 0 } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toEqual({ error: expect.any(String), field: 'count' });
    const unknownField = await app.inject({ method: 'POST', url: '/v1/recommend', payload: { userId: 'u1', colour: 'red' } });
    expect(unknownField.statusCode).toBe(400);
    const polluted = await app.inject({
      method: 'POST',
      url: '/v1/recommend',
      headers: { 'content-type': 'application/json' },
      payload: '{"userId":"u1","context":{"__proto__":{"admin":true}}}',
    });
    expect(polluted.statusCode).toBe(400);
    expect(polluted.json().field).toBe('context.__proto__');
    const ok = await app.inject({ method: 'POST', url: '/v1/recommend', headers: { 'x-request-id': 'r-42' }, payload: { userId: 'u9' } });
    expect(ok.json()).toMatchObject({ requestId: 'r-42', userId: 'u9' });
    expect(service.requests.at(-1)).toMatchObject({ requestId: 'r-42', count: 10 });
  });

  it('never leaks internals on a server error', async () => {
    const response = await app.inject({ method: 'POST', url: '/v1/recommend', payload: { userId: 'explode' } });
    expect(response.statusCode).toBe(500);
    expect(response.json()).toEqual({ error: 'internal error' });
    expect(response.body).not.toContain('secret');
  });

  it('serves similar items, experiments, health, readiness and metrics', async () => {
    expect((await app.inject({ url: '/v1/items/known/similar?count=5' })).json().items).toHaveLength(1);
    expect((await app.inject({ url: '/v1/items/unknown/similar' })).statusCode).toBe(404);
    expect((await app.inject({ url: '/v1/items/known/similar?count=abc' })).json().field).toBe('count');
    expect((await app.inject({ url: '/v1/experiments/exp', headers: auth })).json()).toEqual({ id: 'exp' });
    expect((await app.inject({ url: '/v1/experiments/none', headers: auth })).statusCode).toBe(404);
    expect((await app.inject({ url: '/healthz' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/readyz' })).json().ready).toBe(true);
    const metrics = await app.inject({ url: '/metrics' });
    expect(metrics.headers['content-type']).toContain('text/plain');
    expect((await app.inject({ url: '/nowhere' })).json()).toEqual({ error: expect.any(String) });
  });

  it('handles concurrent requests independently', async () => {
    const responses = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        app.inject({ method: 'POST', url: '/v1/recommend', payload: { userId: `user-${i}`, requestId: `req-${i}` } }),
      ),
    );
    responses.forEach((response, i) => expect(response.json()).toMatchObject({ requestId: `req-${i}`, userId: `user-${i}` }));
  });
});

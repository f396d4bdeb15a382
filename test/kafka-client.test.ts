/**
 * The typed service client: events go to the right topic with the right key (validated first), subscriptions see
 * everyone's or one user's recommendations, and `recommend` speaks HTTP to `POST /v1/recommend`.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EddyClient, EddyHttpError, EddyValidationError, routeEvent } from '../connectors/client.js';
import { partitionForKey } from '../connectors/partitioner.js';
import type { RecommendationResponse } from '../schema/events.js';
import { logUnderTest, readUntil, waitFor, type LogUnderTest } from './kafka/harness.js';

const TOPICS = { events: 4, items: 2, users: 2, recommendations: 3 };

function response(userId: string, n: number): RecommendationResponse {
  return { requestId: `r-${userId}-${n}`, userId, items: [{ itemId: `i${n}`, score: 1 / (n + 1), source: 'popular' }], model: 'm1', variant: 'a', tookMs: 1 };
}

describe.each(['embedded', 'kafkajs'] as const)('EddyClient over %s', (kind) => {
  let subject: LogUnderTest;
  beforeAll(async () => {
    subject = await logUnderTest(kind, TOPICS);
  });
  afterAll(async () => {
    await subject?.close();
  });

  it('pushes each event to its topic, keyed so it lands on the key’s partition', async () => {
    const client = new EddyClient({ log: subject.log });
    const events = [
      { id: 'e1', type: 'click', userId: 'u1', itemId: 'i1', ts: 1 },
      { type: 'item', itemId: 'i1', ts: 2, fields: { category: 'books' } },
      { type: 'user', userId: 'u2', ts: 3, fields: { country: 'NL' } },
      { id: 'e2', type: 'purchase', userId: 'u2', itemId: 'i1', ts: 4, value: 9.5 },
    ] as const;
    const landed = await client.push(events);
    expect(landed.map((l) => l.topic)).toEqual(['events', 'items', 'users', 'events']);
    expect(landed.map((l) => l.partition)).toEqual([
      partitionForKey('u1', TOPICS.events),
      partitionForKey('i1', TOPICS.items),
      partitionForKey('u2', TOPICS.users),
      partitionForKey('u2', TOPICS.events),
    ]);
    expect(routeEvent(events[1])).toEqual({ topic: 'items', key: 'i1' });

    const reader = subject.log.consumer({ group: `check-${kind}`, topics: ['items'], pollTimeoutMs: 50 });
    const [item] = await readUntil(reader, (rs) => rs.length >= 1);
    await reader.close();
    expect(item!.key).toBe('i1');
    expect(JSON.parse(item!.value)).toEqual(events[1]);
  });

  it('refuses an invalid batch before sending any of it, naming the field', async () => {
    const client = new EddyClient({ log: subject.log });
    const before = await subject.log.offsets('events');
    const bad = [
      { id: 'ok', type: 'view', userId: 'u3', itemId: 'i3', ts: 5 },
      { id: 'bad', type: 'view', userId: '', itemId: 'i3', ts: 5 },
    ];
    const error = await client.push(bad as never).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EddyValidationError);
    expect((error as EddyValidationError).issue.field).toBe('userId');
    expect((error as EddyValidationError).index).toBe(1);
    expect(await subject.log.offsets('events')).toEqual(before);
  });

  it('subscribes to everyone’s recommendations or to one user’s', async () => {
    const client = new EddyClient({ log: subject.log });
    const all: RecommendationResponse[] = [];
    const mine: RecommendationResponse[] = [];
    const invalid: string[] = [];
    // From the beginning, so the test does not depend on when the subscribers' groups settle.
    const everyone = client.subscribe({
      fromBeginning: true,
      onRecommendation: (r) => void all.push(r),
      onInvalid: (_, raw) => invalid.push(raw),
    });
    const justU7 = client.subscribe({
      userId: 'u7',
      fromBeginning: true,
      onRecommendation: (r) => void mine.push(r),
      onInvalid: (_, raw) => invalid.push(raw),
    });
    const publish = async () => {
      const users = ['u5', 'u6', 'u7', 'u8'];
      await subject.log.append(
        'recommendations',
        users.flatMap((u) => [0, 1].map((n) => ({ key: u, value: JSON.stringify(response(u, n)) }))),
      );
      await subject.log.append('recommendations', [{ key: 'u7', value: '{"not":"a response"}' }]);
    };
    await publish();
    await waitFor(() => all.length >= 8 && mine.length >= 2 && invalid.length >= 2, 30_000, 'recommendations');
    await client.close();
    await Promise.all([everyone.done, justU7.done]);
    expect(all.map((r) => r.requestId).sort()).toEqual(['u5', 'u6', 'u7', 'u8'].flatMap((u) => [`r-${u}-0`, `r-${u}-1`]).sort());
    expect(mine.map((r) => r.requestId)).toEqual(['r-u7-0', 'r-u7-1']);
    expect(invalid).toEqual(['{"not":"a response"}', '{"not":"a response"}']);
  }, 60_000);
});

describe('EddyClient.recommend', () => {
  let server: Server;
  let url: string;
  const received: unknown[] = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        if (req.method !== 'POST' || req.url !== '/v1/recommend') {
          res.writeHead(404).end('not found');
          return;
        }
        const request = JSON.parse(body) as { userId: string; requestId: string };
        received.push(request);
        if (request.userId === 'broken') {
          res.writeHead(200, { 'content-type': 'application/json' }).end('{"items": "nope"}');
          return;
        }
        if (request.userId === 'overloaded') {
          res.writeHead(503).end('try later');
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ...response(request.userId, 3), requestId: request.requestId }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('posts a validated request and validates the response', async () => {
    const client = new EddyClient({ httpUrl: url });
    const result = await client.recommend({ requestId: 'q1', userId: 'u1', count: 5 });
    expect(result).toEqual({ ...response('u1', 3), requestId: 'q1' });
    expect(received).toEqual([{ requestId: 'q1', userId: 'u1', count: 5 }]);

    await expect(client.recommend({ requestId: 'q2', userId: 'u1', count: 0 })).rejects.toBeInstanceOf(EddyValidationError);
    expect(received).toHaveLength(1);
    await expect(client.recommend({ requestId: 'q3', userId: 'broken', count: 5 })).rejects.toBeInstanceOf(EddyValidationError);
    const overloaded = await client.recommend({ requestId: 'q4', userId: 'overloaded', count: 5 }).catch((e: unknown) => e);
    expect(overloaded).toBeInstanceOf(EddyHttpError);
    expect((overloaded as EddyHttpError).status).toBe(503);
  });
});

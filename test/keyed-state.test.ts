import fc from 'fast-check';
import { from, lastValueFrom, toArray, type OperatorFunction } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { batchOf, type Batch } from '../operators/batch.js';
import { KeyedState, keyedReduce, type KeyedStateSnapshot } from '../operators/keyed-state.js';

function run<A, B>(operator: OperatorFunction<Batch<A>, Batch<B>>, batches: Batch<A>[]): Promise<Batch<B>[]> {
  return lastValueFrom(operator(from(batches)).pipe(toArray()));
}

describe('KeyedState', () => {
  it('gets, sets, updates and deletes', () => {
    const state = new KeyedState<number>({ maxKeys: 10 });
    expect(state.get('a')).toBeUndefined();
    state.set('a', 1);
    expect(state.update('a', (n) => (n ?? 0) + 5)).toBe(6);
    expect(state.update('b', (n) => (n ?? 100) + 1)).toBe(101);
    expect(state.get('a')).toBe(6);
    expect(state.size).toBe(2);
    expect(state.delete('a')).toBe(true);
    expect(state.delete('a')).toBe(false);
    expect(state.has('a')).toBe(false);
    expect([...state.entries()]).toEqual([['b', 101]]);
  });

  it('evicts the least recently used key and hands its state to onEvict', () => {
    const evicted: [string, number][] = [];
    const state = new KeyedState<number>({ maxKeys: 3, onEvict: (k, s) => evicted.push([k, s]) });
    state.set('a', 1);
    state.set('b', 2);
    state.set('c', 3);
    state.get('a');
    state.set('d', 4);
    expect(evicted).toEqual([['b', 2]]);
    expect(state.has('a')).toBe(true);
    state.set('e', 5);
    expect(evicted).toEqual([
      ['b', 2],
      ['c', 3],
    ]);
    expect(state.size).toBe(3);
    expect(state.evictions).toBe(2);
  });

  it('rejects a bound that is not a positive integer', () => {
    expect(() => new KeyedState({ maxKeys: 0 })).toThrow(RangeError);
    expect(() => new KeyedState({ maxKeys: 1.5 })).toThrow(RangeError);
  });

  it('never holds more than maxKeys, and holds exactly what was written minus what was deleted or evicted', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), key: fc.integer({ min: 0, max: 20 }), value: fc.integer() }),
      fc.record({ kind: fc.constant('update' as const), key: fc.integer({ min: 0, max: 20 }), value: fc.integer() }),
      fc.record({ kind: fc.constant('get' as const), key: fc.integer({ min: 0, max: 20 }) }),
      fc.record({ kind: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 20 }) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.array(op, { maxLength: 200 }), (maxKeys, ops) => {
        const model = new Map<number, number>();
        let evictCalls = 0;
        const state = new KeyedState<number, number>({
          maxKeys,
          onEvict: (key, value) => {
            expect(model.get(key)).toBe(value);
            model.delete(key);
            evictCalls++;
          },
        });
        for (const o of ops) {
          if (o.kind === 'set') {
            state.set(o.key, o.value);
            model.set(o.key, o.value);
          } else if (o.kind === 'update') {
            const next = state.update(o.key, (n) => (n ?? 0) + o.value);
            model.set(o.key, (model.get(o.key) ?? 0) + o.value);
            expect(next).toBe(model.get(o.key));
          } else if (o.kind === 'get') {
            expect(state.get(o.key)).toBe(model.get(o.key));
          } else {
            expect(state.delete(o.key)).toBe(model.delete(o.key));
          }
          expect(state.size).toBeLessThanOrEqual(maxKeys);
          expect(new Map(state.entries())).toEqual(model);
        }
        expect(state.evictions).toBe(evictCalls);
      }),
    );
  });

  it('round-trips through a JSON snapshot', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.string({ maxLength: 4 }), fc.record({ clicks: fc.nat(), last: fc.string() })), { maxLength: 50 }),
        fc.integer({ min: 1, max: 30 }),
        (writes, maxKeys) => {
          const state = new KeyedState<{ clicks: number; last: string }>({ maxKeys });
          for (const [key, value] of writes) state.set(key, value);
          const json = JSON.parse(JSON.stringify(state.snapshot())) as KeyedStateSnapshot<string>;
          const restored = new KeyedState<{ clicks: number; last: string }>({ maxKeys });
          restored.restore(json);
          expect([...restored.entries()]).toEqual([...state.entries()]);
          expect(restored.evictions).toBe(state.evictions);
        },
      ),
    );
  });

  it('applies a batch and returns each changed key once, with its last state, in first-change order', () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.tuple(fc.integer({ min: 0, max: 9 }), fc.integer()), { maxLength: 30 }), { maxLength: 5 }), (batches) => {
        const state = new KeyedState<number[], number>();
        const model = new Map<number, number[]>();
        for (const batch of batches) {
          const changes = state.applyBatch(
            batch,
            ([key]) => key,
            (current, [, value]) => [...(current ?? []), value],
          );
          const expected = new Map<number, number[]>();
          for (const [key, value] of batch) {
            model.set(key, [...(model.get(key) ?? []), value]);
            expected.set(key, model.get(key)!);
          }
          expect(changes).toEqual([...expected].map(([key, s]) => ({ key, state: s })));
        }
        expect(new Map(state.entries())).toEqual(model);
      }),
    );
  });

  it('reports a key evicted and created again within one batch twice, in order', () => {
    const evicted: [string, number][] = [];
    const state = new KeyedState<number>({ maxKeys: 1, onEvict: (k, s) => evicted.push([k, s]) });
    const changes = state.applyBatch(['a', 'a', 'b', 'a'], (k) => k, (n) => (n ?? 0) + 1);
    expect(changes).toEqual([
      { key: 'a', state: 2 },
      { key: 'b', state: 1 },
      { key: 'a', state: 1 },
    ]);
    expect(evicted).toEqual([
      ['a', 2],
      ['b', 1],
    ]);
  });

  it('uses the codec for states JSON cannot carry', () => {
    const codec = {
      encode: (s: Map<string, number>) => [...s],
      decode: (e: unknown) => new Map(e as [string, number][]),
    };
    const state = new KeyedState<Map<string, number>>({ codec });
    state.set('u1', new Map([['i1', 3]]));
    const restored = new KeyedState<Map<string, number>>({ codec });
    restored.restore(JSON.parse(JSON.stringify(state.snapshot())) as KeyedStateSnapshot<string>);
    expect(restored.get('u1')).toEqual(new Map([['i1', 3]]));
  });

  it('evicts on restore when the snapshot holds more keys than the bound', () => {
    const big = new KeyedState<number>({ maxKeys: 5 });
    for (let i = 0; i < 5; i++) big.set(`k${i}`, i);
    const evicted: string[] = [];
    const small = new KeyedState<number>({ maxKeys: 2, onEvict: (k) => evicted.push(k) });
    small.restore(big.snapshot());
    expect(small.size).toBe(2);
    expect(evicted).toEqual(['k0', 'k1', 'k2']);
    expect([...small.entries()]).toEqual([
      ['k3', 3],
      ['k4', 4],
    ]);
  });
});

interface Click {
  readonly itemId: string;
  readonly n: number;
}

describe('keyedReduce', () => {
  it('emits one changelog entry per key changed in each batch, and keeps batches one to one', async () => {
    const state = new KeyedState<number>();
    const op = keyedReduce<Click, number>({ key: (c) => c.itemId, state, reduce: (s, c) => (s ?? 0) + c.n });
    const batches = [
      batchOf<Click>(
        [
          { itemId: 'a', n: 1 },
          { itemId: 'b', n: 2 },
          { itemId: 'a', n: 3 },
        ],
        10,
      ),
      batchOf<Click>([], 20),
      batchOf<Click>([{ itemId: 'b', n: 5 }], 30),
    ];
    const out = await run(op, batches);
    expect(out.map((b) => b.items)).toEqual([
      [
        { key: 'a', state: 4 },
        { key: 'b', state: 2 },
      ],
      [],
      [{ key: 'b', state: 7 }],
    ]);
    out.forEach((b, i) => expect(b.ticket).toBe(batches[i]!.ticket));
    expect(out.map((b) => b.watermark)).toEqual([10, 20, 30]);
    expect(op.info).toMatchObject({ kind: 'keyed-reduce', params: { emit: 'changes' } });
  });

  it('emits per item with a custom emit, skipping undefined', async () => {
    const state = new KeyedState<number>({ maxKeys: 1 });
    const op = keyedReduce<Click, number, string>({
      key: (c) => c.itemId,
      state,
      reduce: (s, c) => (s ?? 0) + c.n,
      emit: (key, total) => (total >= 3 ? `${key}=${total}` : undefined),
    });
    const out = await run(op, [
      batchOf<Click>([
        { itemId: 'a', n: 1 },
        { itemId: 'a', n: 2 },
        { itemId: 'b', n: 4 },
        { itemId: 'a', n: 1 },
      ]),
    ]);
    expect(out.map((b) => b.items)).toEqual([['a=3', 'b=4']]);
    expect(state.evictions).toBe(2);
  });
});

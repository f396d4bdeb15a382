import { map } from 'rxjs';
import { withItems } from './batch.js';
import { defineOperator, type Operator } from './operator.js';

/** Turns a state into a JSON-serialisable value and back, for states that hold Maps, typed arrays and the like. */
export interface StateCodec<S> {
  encode(state: S): unknown;
  decode(encoded: unknown): S;
}

export interface KeyedStateOptions<K, S> {
  /** Most keys held at once; beyond it a key not used recently is evicted (see `KeyedState`). Default 100_000. */
  readonly maxKeys?: number;
  /** Told about every key evicted by the bound, so a store can spill its state. Not called by `delete`. */
  readonly onEvict?: (key: K, state: S) => void;
  /** Used by `snapshot` and `restore`. Default: the state is already JSON-serialisable and is stored as it is. */
  readonly codec?: StateCodec<S>;
}

export interface KeyedStateSnapshot<K> {
  /**
   * `[key, encoded state]` in eviction order, so a restore keeps it. Recent-use flags are not kept: after a restore
   * every key starts as not recently used.
   */
  readonly entries: readonly (readonly [K, unknown])[];
  readonly evictions: number;
}

interface Slot<S> {
  state: S;
  /** Set on every access and cleared when the eviction hand passes, which gives the key a second chance. */
  used: boolean;
  /** The `applyBatch` call that last changed the key, and where its change is in that call's result. */
  round: number;
  change: number;
}

/**
 * A bounded map from key to state. Eviction is second-chance (CLOCK), an amortised O(1) approximation of LRU: an
 * access only sets a flag, and the eviction hand moves keys used since it last passed to the back instead of evicting
 * them. That keeps `get` and `update` to one hash lookup, which matters on the per-event path.
 */
export class KeyedState<S, K = string> {
  readonly maxKeys: number;
  private evicted = 0;
  private readonly slots = new Map<K, Slot<S>>();
  private readonly onEvict: ((key: K, state: S) => void) | undefined;
  private readonly codec: StateCodec<S> | undefined;
  private round = 0;

  constructor(options: KeyedStateOptions<K, S> = {}) {
    this.maxKeys = options.maxKeys ?? 100_000;
    if (!Number.isInteger(this.maxKeys) || this.maxKeys < 1) {
      throw new RangeError(`maxKeys must be a positive integer, got ${this.maxKeys}`);
    }
    this.onEvict = options.onEvict;
    this.codec = options.codec;
  }

  get size(): number {
    return this.slots.size;
  }

  /** Keys evicted by the bound since creation (counting those before the snapshot restored from). */
  get evictions(): number {
    return this.evicted;
  }

  has(key: K): boolean {
    return this.slots.has(key);
  }

  get(key: K): S | undefined {
    const slot = this.slots.get(key);
    if (slot === undefined) return undefined;
    slot.used = true;
    return slot.state;
  }

  set(key: K, state: S): void {
    const slot = this.slots.get(key);
    if (slot !== undefined) {
      slot.state = state;
      slot.used = true;
      return;
    }
    this.insert(key, state);
  }

  /** Replaces the key's state with `fn(current)`; `current` is undefined for a key not held. Returns the new state. */
  update(key: K, fn: (current: S | undefined) => S): S {
    const slot = this.slots.get(key);
    if (slot !== undefined) {
      slot.state = fn(slot.state);
      slot.used = true;
      return slot.state;
    }
    const state = fn(undefined);
    this.set(key, state);
    return state;
  }

  /** `update` for hot loops: one lookup and no closure per call. Returns the new state. */
  apply<T>(key: K, item: T, reduce: (current: S | undefined, item: T, key: K) => S): S {
    const slot = this.slots.get(key);
    if (slot !== undefined) {
      slot.state = reduce(slot.state, item, key);
      slot.used = true;
      return slot.state;
    }
    const state = reduce(undefined, item, key);
    this.set(key, state);
    return state;
  }

  /**
   * Applies items in order and returns one `{key, state}` per key they changed, with the state after the last of them:
   * a changelog. A key evicted and created again within the call appears twice, in that order.
   */
  applyBatch<T>(
    items: readonly T[],
    keyOf: (item: T) => K,
    reduce: (current: S | undefined, item: T, key: K) => S,
  ): KeyedUpdate<K, S>[] {
    const round = ++this.round;
    const changes: { key: K; state: S }[] = [];
    for (const item of items) {
      const key = keyOf(item);
      let slot = this.slots.get(key);
      if (slot === undefined) {
        slot = this.insert(key, reduce(undefined, item, key));
      } else {
        slot.state = reduce(slot.state, item, key);
        slot.used = true;
      }
      if (slot.round === round) changes[slot.change]!.state = slot.state;
      else {
        slot.round = round;
        slot.change = changes.length;
        changes.push({ key, state: slot.state });
      }
    }
    return changes;
  }

  delete(key: K): boolean {
    return this.slots.delete(key);
  }

  /** Every key and state, in the order the eviction hand will consider them. Does not count as an access. */
  *entries(): IterableIterator<[K, S]> {
    for (const [key, slot] of this.slots) yield [key, slot.state];
  }

  snapshot(): KeyedStateSnapshot<K> {
    const entries: [K, unknown][] = [];
    for (const [key, slot] of this.slots) entries.push([key, this.codec ? this.codec.encode(slot.state) : slot.state]);
    return { entries, evictions: this.evicted };
  }

  /** Replaces everything held with the snapshot's content; entries beyond `maxKeys` are evicted as usual. */
  restore(snapshot: KeyedStateSnapshot<K>): void {
    this.slots.clear();
    this.evicted = snapshot.evictions;
    for (const [key, encoded] of snapshot.entries) {
      this.set(key, this.codec ? this.codec.decode(encoded) : (encoded as S));
    }
  }

  private insert(key: K, state: S): Slot<S> {
    if (this.slots.size >= this.maxKeys) this.evictOne();
    const slot: Slot<S> = { state, used: false, round: 0, change: 0 };
    this.slots.set(key, slot);
    return slot;
  }

  private evictOne(): void {
    for (;;) {
      const oldest = this.slots.entries().next();
      if (oldest.done) return;
      const [key, slot] = oldest.value;
      this.slots.delete(key);
      if (slot.used) {
        slot.used = false;
        this.slots.set(key, slot);
        continue;
      }
      this.evicted++;
      this.onEvict?.(key, slot.state);
      return;
    }
  }
}

/** The latest state of one key, as `keyedReduce` emits it by default. */
export interface KeyedUpdate<K, S> {
  readonly key: K;
  readonly state: S;
}

export interface KeyedReduceOptions<T, S, K> {
  readonly name?: string;
  readonly key: (item: T) => K;
  readonly state: KeyedState<S, K>;
  /** The key's next state; it may mutate and return `current` to avoid allocating. */
  readonly reduce: (current: S | undefined, item: T, key: K) => S;
}

/**
 * Applies items to keyed state in batch order. By default each output batch holds one `{key, state}` per key the
 * batch changed, with the state as it stands after the batch: a changelog a store can write. With `emit`, each item
 * instead yields `emit(key, state, item)` when that is not undefined.
 *
 * States are passed on by reference: when `reduce` mutates in place, a consumer that keeps one must copy it.
 */
export function keyedReduce<T, S, K = string>(
  options: KeyedReduceOptions<T, S, K> & { readonly emit?: 'changes' },
): Operator<T, KeyedUpdate<K, S>>;
export function keyedReduce<T, S, O, K = string>(
  options: KeyedReduceOptions<T, S, K> & { readonly emit: (key: K, state: S, item: T) => O | undefined },
): Operator<T, O>;
export function keyedReduce<T, S, O, K>(
  options: KeyedReduceOptions<T, S, K> & { readonly emit?: 'changes' | ((key: K, state: S, item: T) => O | undefined) },
): Operator<T, O | KeyedUpdate<K, S>> {
  const { key: keyOf, state: keyed, reduce, emit = 'changes' } = options;
  const info = {
    name: options.name ?? 'keyed-reduce',
    kind: 'keyed-reduce',
    params: { maxKeys: keyed.maxKeys, emit: typeof emit === 'function' ? 'per-item' : 'changes' },
  };
  if (emit === 'changes') {
    return defineOperator<T, KeyedUpdate<K, S>>(info, (source$) =>
      source$.pipe(
        map((batch) => withItems(batch, keyed.applyBatch(batch.items, keyOf, reduce))),
      ),
    );
  }
  return defineOperator<T, O>(info, (source$) =>
    source$.pipe(
      map((batch) => {
        const out: O[] = [];
        for (const item of batch.items) {
          const key = keyOf(item);
          const next = keyed.apply(key, item, reduce);
          const output = emit(key, next, item);
          if (output !== undefined) out.push(output);
        }
        return withItems(batch, out);
      }),
    ),
  );
}

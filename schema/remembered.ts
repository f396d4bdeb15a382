/**
 * `compute` with at least the last `capacity / 2` results (at most `capacity`) remembered by key, in two generations:
 * when the young one is full it becomes the old one, and a key found in the old one moves back to the young.
 *
 * Two generations rather than eviction one entry at a time: finding a map's oldest entry walks past every entry
 * deleted before it, which V8 keeps in place until the table is rebuilt, and cost 4 µs a lookup at 8,192 entries.
 */
export function remembered<V>(compute: (key: string) => V, capacity: number): (key: string) => V {
  let young = new Map<string, V>();
  let old = new Map<string, V>();
  return (key) => {
    let result = young.get(key);
    if (result === undefined) {
      result = old.get(key) ?? compute(key);
      if (young.size >= capacity / 2) {
        old = young;
        young = new Map();
      }
      young.set(key, result);
    }
    return result;
  };
}

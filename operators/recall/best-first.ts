/**
 * Indices of the `limit` highest of `values[0..n)`, best first, equal values in index order: the first `limit` of a
 * stable sort by value, descending. Sources rank a few dozen of several hundred scored items on every request, so this
 * finds the cut with a selection pass and sorts only what is above it, with no comparator calls.
 */
export function bestFirst(values: Float64Array, n: number, limit: number): Int32Array {
  const take = Math.max(0, Math.min(limit, n));
  const picked = new Int32Array(take);
  if (take === 0) return picked;
  const cut = take === n ? -Infinity : kthLargest(copyOf(values, n), take);
  let count = 0;
  for (let i = 0; i < n; i++) if (values[i]! > cut) picked[count++] = i;
  for (let i = 0; i < n && count < take; i++) if (values[i] === cut) picked[count++] = i;
  sortByValueDescending(picked, values);
  return picked;
}

/** The k-th largest of `scratch` (1-based), which it reorders: Hoare's selection, median-of-three pivots. */
function kthLargest(scratch: Float64Array, k: number): number {
  let low = 0;
  let high = scratch.length - 1;
  const target = k - 1;
  while (low < high) {
    const middle = (low + high) >>> 1;
    const a = scratch[low]!;
    const b = scratch[middle]!;
    const c = scratch[high]!;
    const pivot = a > b ? (b > c ? b : a > c ? c : a) : a > c ? a : b > c ? c : b;
    let i = low;
    let j = high;
    while (i <= j) {
      while (scratch[i]! > pivot) i++;
      while (scratch[j]! < pivot) j--;
      if (i <= j) {
        const swap = scratch[i]!;
        scratch[i++] = scratch[j]!;
        scratch[j--] = swap;
      }
    }
    if (target <= j) high = j;
    else if (target >= i) low = i;
    else return scratch[target]!;
  }
  return scratch[target]!;
}

/** Stable merge sort of `indices` (ascending on entry) by `values[index]`, highest first. */
function sortByValueDescending(indices: Int32Array, values: Float64Array): void {
  const n = indices.length;
  let from: Int32Array = indices;
  let to: Int32Array = sortScratch(n);
  for (let width = 1; width < n; width *= 2) {
    for (let start = 0; start < n; start += 2 * width) {
      const middle = Math.min(start + width, n);
      const end = Math.min(start + 2 * width, n);
      let left = start;
      let right = middle;
      for (let out = start; out < end; out++) {
        // Equal values keep the left run's first: the sort is stable.
        if (left < middle && (right >= end || values[from[left]!]! >= values[from[right]!]!)) to[out] = from[left++]!;
        else to[out] = from[right++]!;
      }
    }
    const swap = from;
    from = to;
    to = swap;
  }
  if (from !== indices) indices.set(from.subarray(0, n));
}

/*
 * Scratch space kept between calls: this runs on every request, and V8 gives each typed array of more than 64 bytes
 * a backing store of its own, which costs more to allocate than the work here.
 */
let valueScratch = new Float64Array(1024);
let indexScratch = new Int32Array(256);

function copyOf(values: Float64Array, n: number): Float64Array {
  if (valueScratch.length < n) valueScratch = new Float64Array(2 * n);
  valueScratch.set(values.subarray(0, n));
  return valueScratch.subarray(0, n);
}

function sortScratch(n: number): Int32Array {
  if (indexScratch.length < n) indexScratch = new Int32Array(2 * n);
  return indexScratch;
}

import { FeatureHasher } from './hashing.js';
import type { SparseFeatures } from './learner.js';

/**
 * Feature rows (named numeric features, as the feature store serves them) to hashed sparse features for the online
 * learners, identically at serving and at training time: that sameness is what keeps online models free of skew.
 *
 * Numbers are squashed with sign(x) * log(1 + |x|), so raw counts and ages cannot swamp the weights of linear models;
 * zeros are left out (they add nothing to a linear model). The item id is one more one-hot feature, which lets a
 * model learn each item's own appeal.
 */
export class RowEncoder {
  private readonly hasher: FeatureHasher;
  private cachedNames: readonly string[] | undefined;
  private cachedBuckets = new Uint32Array(0);

  constructor(options: { bits?: number; seed?: number } = {}) {
    this.hasher = new FeatureHasher(options);
  }

  get bits(): number {
    return this.hasher.bits;
  }

  /** The bucket a named row feature lands in. */
  bucketOf(name: string): number {
    return this.hasher.bucket(name);
  }

  encode(names: readonly string[], values: ArrayLike<number>, itemId: string): SparseFeatures & { indices: Uint32Array; values: Float32Array } {
    const buckets = this.bucketsOf(names);
    let count = 1;
    for (let j = 0; j < names.length; j++) if (values[j] !== 0 && Number.isFinite(values[j]!)) count++;
    const indices = new Uint32Array(count);
    const out = new Float32Array(count);
    let k = 0;
    for (let j = 0; j < names.length; j++) {
      const x = values[j]!;
      if (x === 0 || !Number.isFinite(x)) continue;
      indices[k] = buckets[j]!;
      out[k++] = x > 0 ? Math.log1p(x) : -Math.log1p(-x);
    }
    indices[k] = this.hasher.bucket(`item=${itemId}`);
    out[k] = 1;
    return { indices, values: out };
  }

  private bucketsOf(names: readonly string[]): Uint32Array {
    if (names !== this.cachedNames) {
      this.cachedBuckets = Uint32Array.from(names, (name) => this.hasher.bucket(name));
      this.cachedNames = names;
    }
    return this.cachedBuckets;
  }
}

import { Ranker, type FeatureRow, type RankerKind } from '../../models/rankers/ranker.js';
import { mulberry32, sampleNormal } from '../../models/random.js';

/** A small model layout the scorer tests share: three dense features and three categorical fields. */
export const DENSE = ['price', 'age_days', 'ctr_7d'];
export const FIELDS = [
  { name: 'category', vocabularySize: 20 },
  { name: 'brand', vocabularySize: 50 },
  { name: 'user_segment', vocabularySize: 6 },
];
export const LAYOUT = { denseFeatures: DENSE, categoricalFields: FIELDS.map((f) => f.name) };

/** A ranker of `kind` over FIELDS with seeded random parameters, so different seeds score differently. */
export function rankerOf(kind: RankerKind, seed: number, denseFeatures = DENSE): Ranker {
  const ranker = new Ranker({ kind, denseFeatures, categoricalFields: FIELDS, embeddingDim: 4, hidden: [16, 8] }, { seed });
  const random = mulberry32(seed);
  for (let i = 0; i < ranker.params.length; i++) ranker.params[i] = 0.2 * sampleNormal(random);
  return ranker;
}

/** `n` seeded random rows of the DENSE and FIELDS layout. */
export function rowsOf(n: number, seed: number): FeatureRow[] {
  const random = mulberry32(seed);
  return Array.from({ length: n }, () => ({
    dense: Float32Array.from(DENSE, () => sampleNormal(random)),
    categorical: Int32Array.from(FIELDS, (f) => Math.floor(random() * f.vocabularySize)),
  }));
}

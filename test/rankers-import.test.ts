import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { contractMetadata } from '../models/onnx/contract.js';
import { encodeModel, floatTensor, node, valueInfo } from '../models/onnx/proto.js';
import { mulberry32, sampleNormal } from '../models/random.js';
import { exportOnnx, PENULTIMATE_OUTPUT } from '../models/rankers/export.js';
import { importOnnx, onnxDigest, RankerImportError } from '../models/rankers/import.js';
import { Ranker, type FeatureRow, type RankerKind } from '../models/rankers/ranker.js';

const KINDS: readonly RankerKind[] = ['logistic-regression', 'factorization-machine', 'deepfm', 'embedding-mlp'];
const SPEC = {
  denseFeatures: ['price', 'ctr', 'age'],
  categoricalFields: [
    { name: 'item', vocabularySize: 50 },
    { name: 'category', vocabularySize: 7 },
  ],
  embeddingDim: 4,
  hidden: [12, 6],
};

function randomRows(count: number, seed: number): FeatureRow[] {
  const random = mulberry32(seed);
  return Array.from({ length: count }, () => ({
    dense: [sampleNormal(random), sampleNormal(random), random() * 3],
    categorical: [Math.floor(random() * 50), Math.floor(random() * 7)],
  }));
}

/** A ranker whose every parameter is random, so an import that misplaced any block would show. */
function scrambled(kind: RankerKind, seed: number): Ranker {
  const ranker = new Ranker({ kind, ...SPEC }, { seed });
  const random = mulberry32(seed + 100);
  for (let i = 0; i < ranker.params.length; i++) ranker.params[i] = 0.3 * sampleNormal(random);
  return ranker;
}

async function onnxOutputs(bytes: Uint8Array, rows: readonly FeatureRow[], penultimate: boolean) {
  const session = await ort.InferenceSession.create(bytes);
  try {
    const dense = Float32Array.from(rows.flatMap((r) => Array.from(r.dense)));
    const categorical = Int32Array.from(rows.flatMap((r) => Array.from(r.categorical)));
    const out = await session.run({
      dense: new ort.Tensor('float32', dense, [rows.length, 3]),
      categorical: new ort.Tensor('int32', categorical, [rows.length, 2]),
    });
    return { logits: out.logit!.data as Float32Array, penultimate: penultimate ? (out[PENULTIMATE_OUTPUT]!.data as Float32Array) : undefined };
  } finally {
    await session.release();
  }
}

describe('importing an exported ranker', () => {
  for (const kind of KINDS) {
    it(`${kind}: export -> import gives the same model, forward pass and bytes`, async () => {
      const original = scrambled(kind, KINDS.indexOf(kind) + 1);
      const bytes = exportOnnx(original);
      const imported = importOnnx(bytes);
      expect(imported.kind).toBe(kind);
      expect(imported.denseFeatures).toEqual(SPEC.denseFeatures);
      expect(imported.categoricalFields).toEqual(SPEC.categoricalFields);
      expect(imported.hidden).toEqual(original.hidden);
      // The export rounds to float32: the imported parameters are exactly those roundings.
      expect(Array.from(imported.params)).toEqual(Array.from(original.params, Math.fround));
      // Re-exporting the import reproduces the model byte for byte.
      expect(Buffer.from(exportOnnx(imported)).equals(Buffer.from(bytes))).toBe(true);

      const rows = randomRows(64, 7);
      const { logits } = await onnxOutputs(bytes, rows, false);
      rows.forEach((row, i) => expect(Math.abs(imported.logit(row) - logits[i]!)).toBeLessThan(1e-5));
    });
  }

  it('reproduces the penultimate activations the ONNX model outputs', async () => {
    const original = scrambled('deepfm', 11);
    const bytes = exportOnnx(original, { penultimateOutput: true });
    const imported = importOnnx(bytes);
    const rows = randomRows(32, 3);
    const { penultimate } = await onnxOutputs(bytes, rows, true);
    const width = imported.finalLayer().weights.length;
    expect(width).toBe(6);
    rows.forEach((row, i) => {
      const h = imported.penultimate(row);
      for (let u = 0; u < width; u++) expect(Math.abs(h[u]! - penultimate![i * width + u]!)).toBeLessThan(1e-5);
    });
    expect(imported.finalLayer().bias).toBe(Math.fround(original.finalLayer().bias));
  });

  it('names a model by a digest of its bytes', () => {
    const a = exportOnnx(scrambled('embedding-mlp', 1));
    const b = exportOnnx(scrambled('embedding-mlp', 2));
    expect(onnxDigest(a)).toMatch(/^[0-9a-f]{16}$/);
    expect(onnxDigest(a)).toBe(onnxDigest(Uint8Array.from(a)));
    expect(onnxDigest(a)).not.toBe(onnxDigest(b));
  });

  it('refuses models it cannot rebuild, saying why', () => {
    const contract = {
      contractVersion: 1 as const,
      modelKind: 'deepfm',
      dense: { input: 'dense', dtype: 'float32' as const, features: ['price'] },
      categorical: { input: 'categorical', dtype: 'int32' as const, fields: [{ name: 'item', vocabularySize: 4 }] },
      output: { name: 'logit' },
    };
    const foreign = (modelKind: string) =>
      encodeModel({
        graphName: 'foreign',
        nodes: [node('MatMul', ['dense', 'w'], ['logit'])],
        initializers: [floatTensor('w', [1, 1], [1])],
        inputs: [valueInfo('dense', 'float32', ['batch', 1]), valueInfo('categorical', 'int32', ['batch', 1])],
        outputs: [valueInfo('logit', 'float32', ['batch', 1])],
        metadata: contractMetadata({ ...contract, modelKind }),
      });
    expect(() => importOnnx(foreign('xgboost'))).toThrow(RankerImportError);
    expect(() => importOnnx(foreign('xgboost'))).toThrow(/"xgboost" is not one Eddy builds/);
    expect(() => importOnnx(foreign('deepfm'))).toThrow(/float initializer "(bias|embeddings|mlp_w_0)"/);
    expect(() => importOnnx(new Uint8Array([1, 2, 3]))).toThrow(/not an ONNX ModelProto/);
  });
});

import { describe, expect, it } from 'vitest';
import { checkContract, CONTRACT_KEY, ContractError, readContract } from '../models/onnx/contract.js';
import { encodeModel, floatTensor, node, valueInfo } from '../models/onnx/proto.js';
import { contractOf, exportOnnx } from '../models/rankers/export.js';
import { Ranker } from '../models/rankers/ranker.js';

const ranker = new Ranker({
  kind: 'factorization-machine',
  denseFeatures: ['price', 'ctr'],
  categoricalFields: [
    { name: 'category', vocabularySize: 10 },
    { name: 'brand', vocabularySize: 4 },
  ],
  embeddingDim: 2,
});

function modelWithMetadata(metadata: Record<string, string>): Uint8Array {
  return encodeModel({
    graphName: 'g',
    nodes: [node('Identity', ['dense'], ['logit'])],
    initializers: [floatTensor('unused', [1], [0])],
    inputs: [valueInfo('dense', 'float32', ['batch', 1])],
    outputs: [valueInfo('logit', 'float32', ['batch', 1])],
    metadata,
  });
}

describe('ONNX input contract', () => {
  it('round-trips through metadata_props of an exported model', () => {
    expect(readContract(exportOnnx(ranker))).toEqual({
      contractVersion: 1,
      modelKind: 'factorization-machine',
      dense: { input: 'dense', dtype: 'float32', features: ['price', 'ctr'] },
      categorical: {
        input: 'categorical',
        dtype: 'int32',
        fields: [
          { name: 'category', vocabularySize: 10 },
          { name: 'brand', vocabularySize: 4 },
        ],
      },
      output: { name: 'logit' },
    });
  });

  it('says what is wrong with a malformed contract', () => {
    expect(() => readContract(modelWithMetadata({ [CONTRACT_KEY]: '{not json' }))).toThrow(/is not JSON/);
    const wrongVersion = { ...contractOf(ranker), contractVersion: 2 };
    expect(() => readContract(modelWithMetadata({ [CONTRACT_KEY]: JSON.stringify(wrongVersion) }))).toThrow(
      /invalid at contractVersion/,
    );
    const badVocabulary = contractOf(ranker);
    const broken = { ...badVocabulary, categorical: { ...badVocabulary.categorical, fields: [{ name: 'category', vocabularySize: 0 }] } };
    expect(() => readContract(modelWithMetadata({ [CONTRACT_KEY]: JSON.stringify(broken) }))).toThrow(
      /invalid at categorical\.fields\.0\.vocabularySize/,
    );
    expect(() => readContract(new Uint8Array([0xff, 0xff, 0xff]))).toThrow(/not an ONNX ModelProto/);
  });

  it('names the first categorical field that differs from the row layout', () => {
    const contract = contractOf(ranker);
    expect(() => checkContract(contract, { denseFeatures: ['price', 'ctr'], categoricalFields: ['category', 'brand'] })).not.toThrow();
    expect(() => checkContract(contract, { denseFeatures: ['price', 'ctr'], categoricalFields: ['category', 'shop'] })).toThrow(
      new ContractError(
        'contract mismatch (factorization-machine): categorical field 1: the model expects "brand" but the rows carry "shop" (model has 2, rows have 2)',
      ),
    );
    expect(() => checkContract(contract, { denseFeatures: ['price'], categoricalFields: ['category', 'brand'] })).toThrow(
      /dense feature 1: the model expects "ctr" but the rows carry nothing/,
    );
  });
});

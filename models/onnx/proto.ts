/**
 * Small builders over the ONNX protobuf schema (onnx-proto), so model exporters read as graphs rather than as
 * protobuf plumbing. Tensors are written as little-endian `raw_data`, which is what onnxruntime reads fastest.
 */
import onnxProto from 'onnx-proto';
import protobuf from 'protobufjs';

export const { onnx } = onnxProto;
export type NodeProto = onnxProto.onnx.INodeProto;
export type TensorProto = onnxProto.onnx.ITensorProto;
export type ValueInfoProto = onnxProto.onnx.IValueInfoProto;

/** ONNX element type codes (TensorProto.DataType) for the types Eddy's contracts use. */
export const ElementType = { float32: 1, int32: 6, int64: 7 } as const;
export type ElementTypeName = keyof typeof ElementType;

/** The opset every Eddy exporter targets: ReduceSum and Unsqueeze take their axes as inputs from 13 on. */
export const OPSET = 13;
const IR_VERSION = 8;

function rawBytes(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

export function floatTensor(name: string, dims: readonly number[], values: ArrayLike<number>): TensorProto {
  return { name, dims: [...dims], dataType: ElementType.float32, rawData: rawBytes(Float32Array.from(values)) };
}

export function int32Tensor(name: string, dims: readonly number[], values: ArrayLike<number>): TensorProto {
  return { name, dims: [...dims], dataType: ElementType.int32, rawData: rawBytes(Int32Array.from(values)) };
}

export function int64Tensor(name: string, dims: readonly number[], values: readonly number[]): TensorProto {
  return {
    name,
    dims: [...dims],
    dataType: ElementType.int64,
    rawData: rawBytes(BigInt64Array.from(values, (v) => BigInt(v))),
  };
}

type AttributeValue = number | readonly number[];

export function node(
  opType: string,
  inputs: readonly string[],
  outputs: readonly string[],
  attributes: Readonly<Record<string, AttributeValue>> = {},
): NodeProto {
  const attribute = Object.entries(attributes).map(([name, value]) =>
    typeof value === 'number'
      ? Number.isInteger(value)
        ? { name, type: onnx.AttributeProto.AttributeType.INT, i: value }
        : { name, type: onnx.AttributeProto.AttributeType.FLOAT, f: value }
      : { name, type: onnx.AttributeProto.AttributeType.INTS, ints: [...value] },
  );
  return { opType, input: [...inputs], output: [...outputs], name: `${opType}_${outputs[0] ?? ''}`, attribute };
}

/** A tensor graph input or output; string dimensions are symbolic (such as `batch`). */
export function valueInfo(name: string, type: ElementTypeName, shape: readonly (number | string)[]): ValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ElementType[type],
        shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

export interface ModelParts {
  readonly graphName: string;
  readonly nodes: readonly NodeProto[];
  readonly initializers: readonly TensorProto[];
  readonly inputs: readonly ValueInfoProto[];
  readonly outputs: readonly ValueInfoProto[];
  readonly metadata: Readonly<Record<string, string>>;
  readonly docString?: string;
}

export function encodeModel(parts: ModelParts): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: IR_VERSION,
    producerName: 'eddy',
    producerVersion: '1',
    opsetImport: [{ domain: '', version: OPSET }],
    docString: parts.docString ?? '',
    graph: {
      name: parts.graphName,
      node: [...parts.nodes],
      initializer: [...parts.initializers],
      input: [...parts.inputs],
      output: [...parts.outputs],
    },
    metadataProps: Object.entries(parts.metadata).map(([key, value]) => ({ key, value })),
  });
  return onnx.ModelProto.encode(model).finish();
}

const MODEL_METADATA_PROPS_FIELD = 14;
const LENGTH_DELIMITED = 2;

/**
 * The model's `metadata_props` as a plain record. Walks only the top level of the ModelProto and skips the graph, so
 * reading a contract costs microseconds however large the weights are. Fails, with the protobuf error as cause, on
 * bytes that are not ONNX.
 */
export function readMetadata(modelBytes: Uint8Array): Record<string, string> {
  const metadata: Record<string, string> = {};
  try {
    const reader = protobuf.Reader.create(modelBytes);
    while (reader.pos < reader.len) {
      const tag = reader.uint32();
      const field = tag >>> 3;
      const wireType = tag & 7;
      if (field === MODEL_METADATA_PROPS_FIELD && wireType === LENGTH_DELIMITED) {
        const entry = onnx.StringStringEntryProto.decode(reader.bytes());
        metadata[entry.key] = entry.value;
      } else {
        reader.skipType(wireType);
      }
    }
  } catch (cause) {
    throw new Error('model bytes are not an ONNX ModelProto', { cause });
  }
  return metadata;
}

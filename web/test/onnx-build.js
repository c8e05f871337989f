// Small ONNX files written byte by byte for the tests (no onnx package): a protobuf writer and the few messages
// the crafted models need. Field numbers as in onnx.proto (web/src/onnx.js lists those the reader walks).

const FLOAT = 1, INT64 = 7; // TensorProto.DataType

function varint(n) {
  const out = [];
  for (n = BigInt(n); n > 0x7fn; n >>= 7n) out.push(Number(n & 0x7fn) | 0x80);
  out.push(Number(n));
  return out;
}

/** A message from [field, value] pairs: a number or bigint (varint), a string, or bytes (a message, raw data). */
export function message(...pairs) {
  const out = [];
  for (const [field, value] of pairs) {
    if (typeof value === 'number' || typeof value === 'bigint') {
      out.push(...varint(field * 8), ...varint(value < 0 ? BigInt.asUintN(64, BigInt(value)) : value));
    } else {
      const bytes = typeof value === 'string' ? new TextEncoder().encode(value) : value;
      out.push(...varint(field * 8 + 2), ...varint(bytes.length), ...bytes);
    }
  }
  return Uint8Array.from(out);
}

/** A tensor's type and shape as a graph input or output declares it: dims are numbers or names ('batch'). */
export const valueInfo = (name, dims, type = FLOAT) => message([1, name], [2, message([1, message([1, type],
  [2, message(...dims.map((d) => [1, typeof d === 'number' ? message([1, d]) : message([2, d])]))])])]);

/** A float32 (or int64) tensor with its data inside the file, or `extra` pairs (external data, ...). */
export function tensor(name, dims, values, { type = FLOAT, extra = [] } = {}) {
  const data = () => new Uint8Array((type === FLOAT ? Float32Array.from(values) : BigInt64Array.from(values, BigInt)).buffer);
  return message(...dims.map((d) => [1, d]), [2, type], [8, name], ...(values ? [[9, data()]] : []), ...extra);
}

/** A tensor whose bytes onnxruntime would read from `location` (TensorProto.data_location = EXTERNAL). */
export const externalTensor = (name, dims, location) => tensor(name, dims, null, {
  extra: [[13, message([1, 'location'], [2, location])], [14, 1]] });

/** A node: op_type, inputs, outputs, and attributes (already AttributeProto bytes), or a domain. */
export const node = (op, inputs, outputs, { attributes = [], domain } = {}) => message(...inputs.map((i) => [1, i]),
  ...outputs.map((o) => [2, o]), [4, op], ...attributes.map((a) => [5, a]), ...(domain !== undefined ? [[7, domain]] : []));

/** AttributeProto: name, type (AttributeType) and the value pairs. */
export const attribute = (name, type, ...pairs) => message([1, name], [20, type], ...pairs);

/** A model: IR 8, opset 13 (and `opsets` [[domain, version]]), the graph, then `extra` top-level pairs. */
export function model({ nodes, initializers = [], inputs, outputs, graphExtra = [], opsets = [], extra = [] }) {
  const graph = message(...nodes.map((n) => [1, n]), [2, 'g'], ...initializers.map((t) => [5, t]),
    ...inputs.map((i) => [11, i]), ...outputs.map((o) => [12, o]), ...graphExtra);
  return message([1, 8], [2, 'vae-edge tests'], [7, graph], [8, message([2, 13])],
    ...opsets.map(([d, v]) => [8, message([1, d], [2, v])]), ...extra);
}

/** A decoder z [batch, latent] -> x [batch, C, H, W]: x = reshape(z W, [batch, ...to]), W a latent x CHW tensor
 * (or one given), to the shape (or another: a decoder that lies, where the target, computed from z at run time
 * (batch, and to + 0 * sum(z)), keeps shape inference from seeing it). */
export function decoder(latent, shape, { weights, outType = FLOAT, reshapeTo = shape } = {}) {
  const d = shape.reduce((a, b) => a * b);
  const w = weights ?? tensor('W', [latent, d], Array.from({ length: latent * d }, (_, i) => (i % 7) / 7));
  const cast = outType === FLOAT ? [] : [node('Cast', ['y'], ['x'], { attributes: [attribute('to', 2, [3, outType])] })];
  const int64 = (name, values) => tensor(name, [values.length], values, { type: INT64 });
  return model({
    nodes: [node('MatMul', ['z', 'W'], ['h']), node('Shape', ['z'], ['sz']), node('Slice', ['sz', 'zero', 'one'], ['n']),
      node('ReduceSum', ['z'], ['sum'], { attributes: [attribute('keepdims', 2, [3, 0])] }), node('Mul', ['sum', 'nought'], ['nil']),
      node('Cast', ['nil'], ['nil64'], { attributes: [attribute('to', 2, [3, INT64])] }), node('Add', ['rest', 'nil64'], ['dims']),
      node('Concat', ['n', 'dims'], ['to'], { attributes: [attribute('axis', 2, [3, 0])] }),
      node('Reshape', ['h', 'to'], [cast.length ? 'y' : 'x']), ...cast],
    initializers: [w, int64('zero', [0]), int64('one', [1]), int64('rest', reshapeTo), tensor('nought', [], [0])],
    inputs: [valueInfo('z', ['batch', latent])],
    outputs: [valueInfo('x', ['batch', ...shape], outType)],
  });
}

export { FLOAT, INT64 };

// The closed list of what an ONNX file in a model folder may hold (rule G1 of docs/format.md), checked on its bytes
// before onnxruntime sees them, as runtime/compat.py reads them in Python: a hand-written protobuf walker that
// descends only fixed paths (model -> graph -> node -> attribute -> tensor), never into a subgraph (those are
// refused), so its depth is bounded. onnxruntime would resolve a tensor's external data against the process's
// working directory, since it is given bytes, not a path: no such tensor may pass.
//
// Field numbers (onnx.proto): ModelProto graph 7, opset_import 8 (domain 1), functions 25; GraphProto node 1,
// initializer 5, sparse_initializer 15; NodeProto attribute 5, domain 7; AttributeProto t 5, g 6, tensors 10,
// graphs 11, sparse_tensor 22, sparse_tensors 23; TensorProto external_data 13, data_location 14 (1: EXTERNAL).
// A refused field is refused whatever its wire type, as runtime/closed_list.py does.

import { message, ModelFolderError } from './errors.js';
import { RULES } from './format_rules.js';

class Corrupt extends Error {}

/** A varint at data[i]: [value, next i]; values past 2^53 lose precision, which no length or flag here needs. */
function varint(data, i) {
  let value = 0;
  for (let shift = 0; shift < 64; shift += 7) {
    if (i >= data.length) throw new Corrupt('truncated varint');
    const b = data[i++];
    value += (b & 0x7f) * 2 ** shift;
    if (!(b & 0x80)) return [value, i];
  }
  throw new Corrupt('varint longer than 10 bytes');
}

/** The top-level fields of a message: [field number, wire type, value], value a number (varint) or a subarray
 * (length-delimited); fixed-width values are skipped. Wire types 3 and 4 (groups) and 6, 7 are refused. */
function* fields(data) {
  let i = 0;
  while (i < data.length) {
    let key, value;
    [key, i] = varint(data, i);
    const field = Math.floor(key / 8), wire = key % 8;
    if (wire === 0) [value, i] = varint(data, i);
    else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else if (wire === 2) {
      let n;
      [n, i] = varint(data, i);
      if (n > data.length - i) throw new Corrupt('a length past the end');
      value = data.subarray(i, i + n);
      i += n;
    } else throw new Corrupt(`protobuf wire type ${wire}`);
    if (i > data.length) throw new Corrupt('truncated message');
    yield [field, wire, value];
  }
}

// A name as a one-line message shows it: control characters as '?'.
const text = (bytes) => new TextDecoder().decode(bytes).replace(/[\x00-\x1f\x7f]/g, '?');
const DOMAINS = ['', 'ai.onnx'];

/** [IR version, ai.onnx opset] of a ModelProto's bytes (ir_version: field 1; opset_import: 8, domain 1, version 2),
 * as runtime/compat.py's onnx_versions; null where it has none (then onnxruntime refuses it as not loadable). */
export function onnxVersions(bytes) {
  let ir = null, opset = null;
  try {
    for (const [f, w, v] of fields(bytes)) {
      if (f === 1 && w === 0) ir = v;
      else if (f === 8 && w === 2) {
        let domain = '', version = null;
        for (const [g, x, d] of fields(v)) {
          if (g === 1 && x === 2) domain = text(d);
          else if (g === 2 && x === 0) version = d;
        }
        if (DOMAINS.includes(domain) && version !== null) opset = version;
      }
    }
  } catch (e) {
    if (!(e instanceof Corrupt)) throw e;
  }
  return ir === null || opset === null ? null : [ir, opset];
}

// Rule 4h, as runtime/compat.py: which onnxruntime release reads which file (format_rules.js's table).
const READS = RULES.onnxruntime_reads.map(([release, ir, opset]) => [release.split('.').map(Number), ir, opset]);
const release = (text) => (/^(\d+)\.(\d+)/.exec(String(text)) ?? [0, 0, 0]).slice(1, 3).map(Number);
const before = (a, b) => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
const shown = (r) => r.join('.');
/** The oldest release in the table that reads a file of this IR version and opset, or undefined. */
const needs = (ir, opset) => READS.find(([, i, o]) => ir <= i && opset <= o)?.[0];

function tooNew(where, [ir, opset], installed, need) {
  const inTable = READS.filter(([r]) => !before(release(installed), r));
  const fix = inTable.length ? message('fix_opset', { opset: inTable.at(-1)[2] })
    : message('fix_upgrade', { release: shown(READS[0][0]) });
  return message('onnx_too_new', { path: where, needs: need, installed, ir_version: ir, opset, fix });
}

/** Rule 4h before onnxruntime reads the file: the reason the installed onnxruntime (a release within the table)
 * cannot read a file of these versions, or null. Releases after the table's last row are not limited here. */
export function versionProblem(where, versions, installed) {
  const last = READS.at(-1)[0], at = release(installed);
  if (!versions || before(last, at)) return null;
  const row = READS.filter(([r]) => !before(at, r)).at(-1);
  if (row && versions[0] <= row[1] && versions[1] <= row[2]) return null;
  const need = needs(...versions);
  return tooNew(where, versions, installed, need ? message('needs_release', { release: shown(need) })
    : message('needs_newer', { release: shown(last) }));
}

/** Rule 4h after an onnxruntime newer than the table refused the file: the reason in words where the file is newer
 * than any release in the table reads, else null (then it is damage: "not a loadable ONNX model"). */
export function refusedAsTooNew(where, versions, installed) {
  if (!versions || needs(...versions)) return null;
  return tooNew(where, versions, installed, message('needs_newer', { release: installed }));
}

/** Refuse what the closed list leaves out; `where` names the file in each one-line ModelFolderError. */
export function checkClosedList(bytes, where) {
  const refuse = (name, values) => {
    throw new ModelFolderError(message('outside_list', { path: where, what: message(name, values) }));
  };
  const domain = (name) => DOMAINS.includes(name) || refuse('g1_domain', { domain: name });
  const tensor = (t) => {
    for (const [f, w, v] of fields(t)) {
      if (f === 13 || (f === 14 && w === 0 && v === 1)) refuse('g1_external');
    }
  };
  const attribute = (a) => {
    for (const [f, w, v] of fields(a)) {
      if (f === 22 || f === 23) refuse('g1_sparse');
      else if (f === 6 || f === 11) refuse('g1_subgraph');
      else if ((f === 5 || f === 10) && w === 2) tensor(v);
    }
  };
  const node = (n) => {
    for (const [f, w, v] of fields(n)) {
      if (f === 5 && w === 2) attribute(v);
      else if (f === 7 && w === 2) domain(text(v));
    }
  };
  const graph = (g) => {
    for (const [f, w, v] of fields(g)) {
      if (f === 15) refuse('g1_sparse');
      else if (f === 1 && w === 2) node(v);
      else if (f === 5 && w === 2) tensor(v);
    }
  };
  try {
    for (const [f, w, v] of fields(bytes)) {
      if (f === 25) refuse('g1_functions');
      else if (f === 8 && w === 2) {
        for (const [g, x, d] of fields(v)) if (g === 1 && x === 2) domain(text(d));
      } else if (f === 7 && w === 2) graph(v);
    }
  } catch (e) {
    if (e instanceof Corrupt) throw new ModelFolderError(message('not_onnx', { path: where, reason: e.message }));
    throw e;
  }
}

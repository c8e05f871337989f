// onnxruntime sessions for a model folder's files (as runtime/sessions.py): the same options in Node and the
// browser, and a file onnxruntime cannot load refused as a ModelFolderError.

import { message, ModelFolderError, oneLine } from './errors.js';
import { checkClosedList, onnxVersions, refusedAsTooNew, versionProblem } from './onnx.js';

// onnxruntime's threads spin 100 µs after a run, not longer, so the encoder's idle threads do not hold the cores
// the decoder needs next (bench/runtime.py measures it in Python).
const SESSION_CONFIG = { session: { intra_op: { spin_duration_us: '100' } } };

/** The session options for executionProviders and threads (undefined: onnxruntime decides). */
export function sessionOptions(executionProviders, threads) {
  return {
    executionProviders,
    logSeverityLevel: 3, // errors only: warnings from the graph optimizer are noise for users
    ...(threads !== undefined && { intraOpNumThreads: threads, interOpNumThreads: 1 }),
    extra: SESSION_CONFIG,
  };
}

/** backend.session(bytes, threads) on the checked bytes (never the path again: the bytes that run are the bytes
 * checked), once they hold only what the closed list allows (onnx.js); where is the file's path or URL. */
export async function openSession(backend, bytes, threads, where) {
  checkClosedList(bytes, where);
  // rule 4h: the file's IR version and opset, from its bytes, against the installed onnxruntime
  const versions = onnxVersions(bytes), installed = backend.ort?.env?.versions?.common ?? 'unknown';
  const problem = versionProblem(where, versions, installed);
  if (problem) throw new ModelFolderError(problem);
  let session;
  try {
    session = await backend.session(bytes, threads);
  } catch (e) {
    throw new ModelFolderError(refusedAsTooNew(where, versions, installed) ??
      message('not_onnx', { path: where, reason: oneLine(e) }));
  }
  return failingInOneLine(session, where);
}

/** The session, whose run(feed, expect) checks what it returns (rule G3): each output named in expect is float32
 * of exactly those dims, else a ModelFolderError naming the file (a graph may declare one shape and return
 * another: the type and shape it declares are not what it computes). A run that fails is a ModelFolderError too:
 * the library checks every input first, so it is a file that does not compute what it declares (damage that loads,
 * such as a layer fed the wrong tensor; conformance case decoder-fails-to-run). */
function failingInOneLine(session, where) {
  const run = session.run.bind(session);
  session.run = async (feed, expect) => {
    let out;
    try {
      out = await run(feed);
    } catch (e) {
      throw new ModelFolderError(message('failed_to_run', { path: where, reason: oneLine(e) }));
    }
    for (const [name, dims] of Object.entries(expect)) {
      const got = out[name];
      if (!(got?.type === 'float32' && got.dims.length === dims.length && got.dims.every((d, i) => d === dims[i]))) {
        throw new ModelFolderError(message('returned', { path: where, got: got ? `${got.type} ${shape(got.dims)}` : `no ${name}`,
          shape: shape(dims) }));
      }
    }
    return out;
  };
  return session;
}

/** Dims as every reader writes them: [1, 1, 2, 3]. */
const shape = (dims) => `[${[...dims].join(', ')}]`;

// onnxruntime sessions for a model folder's files (as runtime/sessions.py): the same options in Node and the
// browser, and a file onnxruntime cannot load refused as a ModelFolderError.

import { ModelFolderError, oneLine } from './errors.js';
import { checkClosedList } from './onnx.js';

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
  let session;
  try {
    session = await backend.session(bytes, threads);
  } catch (e) {
    throw new ModelFolderError(`${where} is not a loadable ONNX model (corrupt?): ${oneLine(e)}`);
  }
  return failingInOneLine(session, where);
}

/** The session, whose run fails with a ModelFolderError naming the file: the library checks every input first, so
 * a run that fails is a file that does not compute what it declares (damage that loads, such as a layer fed the
 * wrong tensor; conformance case decoder-fails-to-run). */
function failingInOneLine(session, where) {
  const run = session.run.bind(session);
  session.run = async (...args) => {
    try {
      return await run(...args);
    } catch (e) {
      throw new ModelFolderError(`${where} failed to run: ${oneLine(e)}`);
    }
  };
  return session;
}

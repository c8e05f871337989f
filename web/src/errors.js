// The library's two errors, each one line: bad input from the caller, and a model folder that cannot be used
// (as runtime/errors.py in Python), and their words: the templates of format_rules.js.

import { RULES } from './format_rules.js';

/** Bad input from the caller (length, NaN/inf, n <= 0, ...); the message is one line. */
export class RuntimeInputError extends Error {
  name = 'RuntimeInputError';
}

/** A model folder that is missing, tampered with, corrupt or inconsistent; the message is one line. */
export class ModelFolderError extends Error {
  name = 'ModelFolderError';
}

/** The one-line message `name` of format_rules.js, its {placeholders} filled from values. */
export const message = (name, values) => RULES.messages[name].replace(/\{(\w+)\}/g, (_, key) => String(values[key]));

/** The first line of an error's message (at most 300 characters). */
export const oneLine = (e) => String(e?.message ?? e).trim().split('\n')[0].slice(0, 300) || 'unknown error';

/** A value as a message shows it: 'text', an array of 3, a Float32Array of 4, an object (Map), 2.5. */
export function show(v) {
  if (typeof v === 'string') return `'${v}'`;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name} of ${v.length}`;
  return typeof v === 'object' && v !== null ? `an object (${v.constructor?.name ?? 'Object'})` : String(v);
}

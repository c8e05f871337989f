// Read a NumPy .npy file (format 1.x/2.x/3.x, C order, little-endian float32 or uint8): {data, shape}.
// The tests compare the library with arrays that the Python runtime saved this way.

import { readFileSync } from 'node:fs';

const TYPES = { '<f4': Float32Array, '<f8': Float64Array, '|u1': Uint8Array, '<u1': Uint8Array };

export function loadNpy(file) {
  const buf = readFileSync(file);
  if (buf.toString('latin1', 0, 6) !== '\x93NUMPY') throw new Error(`${file} is not an .npy file`);
  const major = buf[6];
  const headerLength = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = (major === 1 ? 10 : 12) + headerLength;
  const header = buf.toString('latin1', major === 1 ? 10 : 12, start);
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*True/.test(header);
  const shape = (/'shape':\s*\(([^)]*)\)/.exec(header)?.[1] ?? '').split(',').filter((s) => s.trim()).map(Number);
  const Type = TYPES[descr];
  if (!Type || fortran) throw new Error(`${file}: ${descr}${fortran ? ', Fortran order' : ''} is not supported here`);
  const count = shape.reduce((a, b) => a * b, 1);
  const bytes = new Uint8Array(buf.buffer, buf.byteOffset + start, count * Type.BYTES_PER_ELEMENT).slice(); // aligned copy
  return { data: new Type(bytes.buffer), shape };
}

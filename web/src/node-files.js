// A model folder's files on disk, for folder.js's open (Node and build.mjs; the browser fetches instead). The
// real path (symlinks resolved) must lie inside the folder's real path; it is opened read-only, without blocking
// (a FIFO never waits for a writer) and without following a symlink swapped in since (libuv adds O_CLOEXEC), and
// fstat says what it is before a byte is read.

import { constants } from 'node:fs';
import { open, realpath } from 'node:fs/promises';
import path from 'node:path';

export const FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOFOLLOW ?? 0);
// open() errors that say what the path is, not that it is missing: a symlink (O_NOFOLLOW), a socket
const NOT_REGULAR = ['ELOOP', 'ENXIO', 'EISDIR'];

/** Whether `real` is `root` or lies under it (both real paths). */
export const under = (real, root) => real === root || real.startsWith(root.endsWith(path.sep) ? root : root + path.sep);

/** The file at `where` inside `folder`, as folder.js's readInside takes it. */
export async function openFile(where, folder) {
  const [real, root] = await Promise.all([realpath(where), realpath(folder)]);
  if (!under(real, root)) return { inside: false };
  let handle;
  try {
    handle = await open(real, FLAGS);
  } catch (e) {
    if (NOT_REGULAR.includes(e.code)) return { inside: true, regular: false, close: async () => {} };
    throw e;
  }
  const info = await handle.stat().catch(async (e) => {
    await handle.close();
    throw e;
  });
  return { inside: true, regular: info.isFile(), size: info.size, read: (n) => readUpTo(handle, n), close: () => handle.close() };
}

/** Up to n bytes from the start of the file, and whether it holds more (one byte more is asked for). */
async function readUpTo(handle, n) {
  const data = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const { bytesRead } = await handle.read(data, got, n - got, got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  const { bytesRead: extra } = await handle.read(new Uint8Array(1), 0, 1, got);
  return { data: got === n ? data : data.subarray(0, got), more: extra > 0 };
}

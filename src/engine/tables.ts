/**
 * Memory of the engine's hash tables (guard index, cover union): each table
 * is one resizable ArrayBuffer, so that replacing or dropping it gives its
 * pages back at once (V8 decommits a buffer resized to 0) instead of at some
 * later GC: garbage tables waiting for a collection would hold RSS that the
 * memory budget no longer charges.
 */
type Resizable = ArrayBuffer & { resize(bytes: number): void; readonly resizable: boolean };
const ResizableArrayBuffer = ArrayBuffer as unknown as new (bytes: number, options: { maxByteLength: number }) => Resizable;

/** A zeroed table of `bytes` that freeTable can give back at once. */
export function allocTable(bytes: number): ArrayBuffer {
  return new ResizableArrayBuffer(bytes, { maxByteLength: bytes });
}

/** Give a table's memory back now; a buffer that is not resizable is left to the GC. */
export function freeTable(buffer: ArrayBufferLike): void {
  const b = buffer as Resizable;
  if (b.resizable === true) b.resize(0);
}

/**
 * ETags of coverage snapshots, for pollers: `If-None-Match` with the tag of the
 * area as it is answers 304 without encoding the area again.
 *
 * The tag is a digest of the bytes the representation is made of: for JSON and
 * text the count word and the records shown (so hashing costs no more than the
 * bytes the reply would carry), for binary the whole area (stale records past
 * the count are part of what mmap shows). Equal bytes give equal tags, so the
 * tag changes whenever the reply would, whatever wrote the area.
 *
 * Tags are weak (`W/"…"`): the same snapshot gzip-encoded or not is one
 * representation for `If-None-Match`, and `If-Range` (which needs a strong tag)
 * makes the server send the whole area instead of a part.
 */
import { createHash } from 'node:crypto';

/** A weak tag over `bytes` and what else selects the representation (format, mode, size). */
export function snapshotTag(bytes: Uint8Array, selector: string): string {
  return `W/"${createHash('sha1').update(selector).update(bytes).digest('base64url')}"`;
}

/** RFC 9110 If-None-Match: `*` or a list of tags, compared weakly. */
export function noneMatch(header: string | undefined, tag: string): boolean {
  if (header === undefined) return false;
  const h = header.trim();
  if (h === '*') return true;
  const want = tag.startsWith('W/') ? tag.slice(2) : tag;
  for (const part of h.split(',')) {
    const p = part.trim();
    if ((p.startsWith('W/') ? p.slice(2) : p) === want) return true;
  }
  return false;
}

/**
 * ETags of coverage snapshots, for pollers: `If-None-Match` with the tag of the
 * area as it is answers 304 without encoding the area again.
 *
 * The tag names the area's memory and how many times it has been written
 * (`Area.stamp`: every writer bumps it: events, count writes, resets, remote
 * moves, the unique bitmap), plus what selects the representation (format,
 * mode, the trace window). O(1) whatever the area's size: a 4 MiB area is not
 * hashed on every poll. The process's start is part of it, so a tag never
 * outlives a restart. Any write changes the tag, even one a representation does
 * not show (a weak tag may change spuriously, never stay on a change).
 *
 * Tags are weak (`W/"…"`): the same snapshot gzip-encoded or not is one
 * representation for `If-None-Match`, and `If-Range` (which needs a strong tag)
 * makes the server send the whole area instead of a part.
 */
import { randomBytes } from 'node:crypto';
import type { AreaStamp } from '../../engine/area.js';

/** This start of the process: stamps restart from 1 with it. */
const EPOCH = randomBytes(6).toString('base64url');

/** A weak tag of the area whose stamp is `stamp`, as the representation `selector` shows it. */
export function areaTag(stamp: AreaStamp, selector: string): string {
  return `W/"${EPOCH}.${stamp.id.toString(36)}.${stamp.writes.toString(36)}.${selector}"`;
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

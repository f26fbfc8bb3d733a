/**
 * Flags the service's node runs with: `npm start`, the container image, the bench's kcovd and
 * the attack suite's server all pass these. Only node's command line takes them (NODE_OPTIONS
 * refuses them, and v8.setFlagsFromString comes after the heap is sized);
 * test/node-flags.test.ts holds package.json's start script and the Dockerfile's CMD to this list,
 * and the server logs it at start when they are missing (`kcovd serve`, a bare `node`).
 *
 * --initial-old-space-size=96 (MiB): kcovd's own heap is small (~20 MiB) while its areas and
 * the bodies passing through are large and outside it. With V8's default limits the old
 * generation was marked and compacted every 30-50 ms under steady binary ingestion in most runs
 * (60-100 mark-compacts in 5 s, with wake-ups of V8's helper threads), in others not. With the
 * flag: 2-3 in 5 s, 512 KiB batches 1,090-1,240 req/s against 810-880 (cover union on), peak
 * RSS of that load 382-385 MiB against 408-411. docs/performance.md, third round.
 */
export const NODE_FLAGS: readonly string[] = ['--initial-old-space-size=96'];

/**
 * What the HTTP layer asks of a fleet (one cover union per corpus shared by
 * several kcovd instances). The engine knows nothing of it: it keeps its own
 * union and a journal of keys that entered it; a fleet pushes the journal
 * out and answers the two questions only it can answer.
 */
import type { Kernel } from '../engine/kernel.js';

export interface FleetStatus {
  /** 'redis' */
  readonly kind: string;
  /** Connected and the last round trip succeeded. */
  readonly connected: boolean;
  /** Why not, when not. */
  readonly error: string | null;
  /** PCs and signals learnt locally and not yet in the fleet's store. */
  readonly pending: number;
  /** Seconds the oldest pending key has waited. */
  readonly lagSeconds: number;
  readonly roundTrips: number;
  /** Time those round trips took, together. */
  readonly roundTripSeconds: number;
  readonly failures: number;
  /** Fleet-wide resets (DELETE /cover on another instance) that emptied a union here. */
  readonly resets: number;
}

/** A corpus's union as the fleet's store last reported it. */
export interface CorpusStatus {
  readonly corpus: string;
  readonly pcs: number;
  readonly signal: number;
}

export interface FleetUnion {
  /** Sorted little-endian words of the corpus's PCs. */
  readonly pcs: Uint32Array;
  readonly signal: number;
}

export interface Fleet {
  /**
   * PCs that are new to this instance (one per record, `stride` words each):
   * which of them are new to the whole fleet (1) or were found first by
   * another instance (0). null when the fleet could not answer in time: the
   * local answer stands and the PCs are pushed later.
   */
  claim(k: Kernel, records: Uint32Array, stride: number): Promise<Uint8Array | null>;
  /** The corpus's union as the fleet holds it, this instance's journal pushed first; null when unreachable. */
  read(k: Kernel): Promise<FleetUnion | null>;
  /**
   * DELETE /cover (the local union already emptied): empty the corpus's union
   * in the fleet and make every other instance empty its own union of that
   * corpus at its next sync round; false when unreachable.
   */
  reset(k: Kernel): Promise<boolean>;
  status(): FleetStatus;
  /** The corpora of this instance's kernels, as the store last reported them. */
  corpusStatus(): CorpusStatus[];
  close(): Promise<void>;
}

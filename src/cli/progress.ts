/** A one-line progress bar on stderr, drawn only when stderr is a terminal. */

export interface ProgressSink {
  isTTY?: boolean;
  columns?: number;
  write(s: string): unknown;
}

function mib(n: number): string {
  return (n / 1048576).toFixed(1);
}

/** The bar's text for `done` of `total` bytes (total null: unknown size, a counter only). */
export function progressLine(done: number, total: number | null, records: number, width = 80): string {
  const tail = ` ${total === null ? mib(done) : `${mib(done)}/${mib(total)}`} MiB, ${records} records`;
  if (total === null || total <= 0) return `posting${tail}`.slice(0, width);
  const frac = Math.min(1, done / total);
  const pct = `${Math.floor(frac * 100)}`.padStart(3) + '%';
  const barWidth = Math.max(10, Math.min(40, width - tail.length - pct.length - 4));
  const fill = Math.round(frac * barWidth);
  return `[${'#'.repeat(fill)}${'-'.repeat(barWidth - fill)}] ${pct}${tail}`.slice(0, width);
}

export class Progress {
  private last = 0;
  private drawn = false;
  readonly enabled: boolean;

  constructor(private readonly out: ProgressSink, private readonly total: number | null, enabled = out.isTTY === true) {
    this.enabled = enabled;
  }

  update(done: number, records: number, force = false): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (!force && now - this.last < 100) return;
    this.last = now;
    this.drawn = true;
    this.out.write(`\r${progressLine(done, this.total, records, (this.out.columns ?? 80) - 1)}\x1b[K`);
  }

  done(): void {
    if (this.enabled && this.drawn) this.out.write('\r\x1b[K');
  }
}

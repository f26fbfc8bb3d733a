/**
 * req.log without a pino child per request. Fastify makes a child logger
 * (bindings {reqId}) for every request; pino serializes the bindings when the
 * child is made, which costs more than most requests do when nothing is
 * logged. This child is made on the first line actually written (a level that
 * is off writes nothing and makes nothing), with the same bindings and options.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { FastifyChildLoggerFactory } from 'fastify/types/logger.js';

type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
type Bindings = Record<string, unknown>;
type ChildOpts = Record<string, unknown>;
type Logger = FastifyBaseLogger & { isLevelEnabled?(level: string): boolean };

/** Whether a line at `level` would be written; a logger that cannot tell is asked to write. */
function enabled(log: Logger, level: string): boolean {
  return typeof log.isLevelEnabled === 'function' ? log.isLevelEnabled(level) : true;
}

export class LazyRequestLog {
  // Plain fields assigned in the constructor: one object shape, the cheapest to make per request.
  private child_: Logger | undefined;
  private readonly parent: Logger;
  private readonly bindings: Bindings;
  private readonly opts: ChildOpts;

  constructor(parent: Logger, bindings: Bindings, opts: ChildOpts) {
    this.child_ = undefined;
    this.parent = parent;
    this.bindings = bindings;
    this.opts = opts;
  }

  get log(): Logger {
    return (this.child_ ??= this.parent.child(this.bindings, this.opts));
  }

  private on(level: Level): boolean {
    // A route-level logLevel makes the child's level differ from the parent's: ask the child then.
    if (this.child_ !== undefined || this.opts.level !== undefined) return enabled(this.log, level);
    return enabled(this.parent, level);
  }

  fatal(...a: unknown[]): void { if (this.on('fatal')) (this.log.fatal as (...x: unknown[]) => void)(...a); }
  error(...a: unknown[]): void { if (this.on('error')) (this.log.error as (...x: unknown[]) => void)(...a); }
  warn(...a: unknown[]): void { if (this.on('warn')) (this.log.warn as (...x: unknown[]) => void)(...a); }
  info(...a: unknown[]): void { if (this.on('info')) (this.log.info as (...x: unknown[]) => void)(...a); }
  debug(...a: unknown[]): void { if (this.on('debug')) (this.log.debug as (...x: unknown[]) => void)(...a); }
  trace(...a: unknown[]): void { if (this.on('trace')) (this.log.trace as (...x: unknown[]) => void)(...a); }
  silent(): void {}
  child(bindings: Bindings, opts?: ChildOpts): FastifyBaseLogger { return this.log.child(bindings, opts); }
  isLevelEnabled(level: string): boolean { return enabled(this.log, level); }
  get level(): string { return this.child_?.level ?? (this.opts.level as string | undefined) ?? this.parent.level; }
  set level(l: string) { this.log.level = l; }
}

export const lazyChildLogger = ((logger: Logger, bindings: Bindings, opts: ChildOpts) =>
  new LazyRequestLog(logger, bindings, opts) as unknown as FastifyBaseLogger) as unknown as FastifyChildLoggerFactory;

/**
 * Typed client for kcovd on undici. Request and reply types are inferred
 * from the same zod schemas the server validates with (schemas/), so a
 * change there shows up here at compile time. Every non-2xx reply becomes
 * a KcovdError carrying the problem's errno, code, status and detail.
 */
import { Pool, type Dispatcher } from 'undici';
import type { z } from 'zod';
import type {
  CountReply, CoverageJson, CpuList, CpuView, DescriptorList, DescriptorView, EventReply, IoctlBody, IoctlReply, JsonEvents, KernelCreate,
  KernelList, KernelView, RemoteEventsQuery, RemoteList, RemoteRegistered, SectionBody, ThreadList, ThreadPut, ThreadView,
} from '../../schemas/index.js';
import { EventBatcher, type BatcherOptions } from './batcher.js';
import { BOOT_HEADER, IF_BOOT_HEADER, type DialectName } from '../wire/names.js';
import type { IoctlName } from '../wire/ioctls.js';
import { KcovdError, KcovdRestartedError } from './errors.js';
import { CoverageSnapshot } from './snapshot.js';

export type Kernel = z.output<typeof KernelView>;
export type KernelCreateInput = z.input<typeof KernelCreate>;
export type Descriptor = z.output<typeof DescriptorView>;
export type IoctlArg = z.input<typeof IoctlBody>['arg'];
export type IoctlResult = z.output<typeof IoctlReply>;
export type Coverage = z.output<typeof CoverageJson>;
export type CountResult = z.output<typeof CountReply>;
export type Thread = z.output<typeof ThreadView>;
export type ThreadCreateInput = z.input<typeof ThreadPut>;
export type EventsInput = z.input<typeof JsonEvents>;
export type EventResult = z.output<typeof EventReply>;
export type SectionInput = z.input<typeof SectionBody>;
/** Where a remote section runs: `{context: "task", tid}` or `{context: "softirq" | "interrupt", cpu, tid?}`. */
export type RemoteEventsOptions = Partial<z.output<typeof RemoteEventsQuery>>;
export type Remote = z.output<typeof RemoteList>['remotes'][number];
export type RemoteRegistration = z.output<typeof RemoteRegistered>;
export type Cpu = z.output<typeof CpuView>;
export type RecordKind = 'pc' | 'cmp';

/** A binary events body: packed little-endian words. */
export type Binary = Uint8Array | ArrayBufferView;

export interface ClientOptions {
  /** Server URL, e.g. http://127.0.0.1:5268 (a path prefix is kept). Defaults to $KCOVD_URL, then that. */
  url?: string;
  /** Bearer token; defaults to $KCOV_TOKEN. */
  token?: string;
  /** Connections kept alive to the server (default 4). */
  connections?: number;
  /** Requests in flight per connection (default 1: keep-alive, no pipelining). */
  pipelining?: number;
  /** Milliseconds to wait for response headers (default 30 s). */
  timeout?: number;
  /** Bring your own dispatcher (an Agent, a MockAgent); the client then does not close it. */
  dispatcher?: Dispatcher;
  /**
   * The start of the service this client works with (its `kcovd-boot`). By default the
   * client takes it from its first reply and sends it back as `if-kcovd-boot` on every
   * later request, so a restarted service answers 412 and the client throws
   * KcovdRestartedError instead of touching fds someone else opened since. A string
   * pins it from the start; false sends nothing.
   */
  boot?: string | false;
}

interface Call {
  method: Dispatcher.HttpMethod;
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  json?: unknown;
  binary?: Binary;
  accept?: string;
  headers?: Record<string, string>;
  /** Statuses that are not errors. */
  ok?: readonly number[];
}

export interface CoverageOptions {
  /** Read, then set the count to 0 in one step. */
  reset?: boolean;
  /** How to read the records; the descriptor's current (or last) mode when absent. */
  mode?: RecordKind;
}

export interface RawCoverageOptions {
  reset?: boolean;
  /** Byte range of the area, inclusive, as `Range: bytes=start-end`. */
  range?: { start: number; end?: number };
}

const seg = encodeURIComponent;

function bytesOf(b: Binary): Uint8Array {
  return b instanceof Uint8Array ? b : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

export class KcovdClient {
  readonly url: URL;
  private readonly token: string | undefined;
  private readonly dispatcher: Dispatcher;
  private readonly ownDispatcher: boolean;
  private readonly prefix: string;
  private readonly timeout: number;
  private readonly trackBoot: boolean;
  private bootId: string | undefined;

  constructor(opts: ClientOptions = {}) {
    this.trackBoot = opts.boot !== false;
    this.bootId = typeof opts.boot === 'string' ? opts.boot : undefined;
    this.url = new URL(opts.url ?? process.env.KCOVD_URL ?? 'http://127.0.0.1:5268');
    this.prefix = this.url.pathname.replace(/\/+$/, '');
    const token = opts.token ?? process.env.KCOV_TOKEN;
    this.token = token === undefined || token === '' ? undefined : token;
    this.timeout = opts.timeout ?? 30_000;
    if (opts.dispatcher !== undefined) {
      this.dispatcher = opts.dispatcher;
      this.ownDispatcher = false;
    } else {
      this.dispatcher = new Pool(this.url.origin, {
        connections: opts.connections ?? 4,
        pipelining: opts.pipelining ?? 1,
        keepAliveTimeout: 10_000,
      });
      this.ownDispatcher = true;
    }
  }

  /** The `kcovd-boot` of the service this client works with; undefined before the first reply. */
  get boot(): string | undefined {
    return this.bootId;
  }

  /** Accept whatever start of the service answers next (after handling a KcovdRestartedError). */
  forgetBoot(): void {
    this.bootId = undefined;
  }

  /** Close the connections this client opened. */
  async close(): Promise<void> {
    if (this.ownDispatcher) await this.dispatcher.close();
  }

  /** One request; the reply body is always consumed, so connections are reused. */
  async request(call: Call): Promise<Dispatcher.ResponseData> {
    let path = this.prefix + call.path;
    if (call.query !== undefined) {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(call.query)) if (v !== undefined) q.set(k, String(v));
      const s = q.toString();
      if (s !== '') path += `?${s}`;
    }
    const headers: Record<string, string> = { accept: call.accept ?? 'application/json', ...call.headers };
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`;
    const boot = this.trackBoot ? this.bootId : undefined;
    if (boot !== undefined) headers[IF_BOOT_HEADER] = boot;
    let body: string | Uint8Array | undefined;
    if (call.binary !== undefined) {
      headers['content-type'] = 'application/octet-stream';
      body = bytesOf(call.binary);
    } else if (call.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(call.json);
    }
    const res = await this.dispatcher.request({
      origin: this.url.origin,
      path,
      method: call.method,
      headers,
      body,
      headersTimeout: this.timeout,
      bodyTimeout: this.timeout,
    });
    const replyBoot = res.headers[BOOT_HEADER];
    if (this.trackBoot && this.bootId === undefined && typeof replyBoot === 'string' && res.statusCode !== 412) this.bootId = replyBoot;
    const ok = call.ok ?? [200, 201, 204, 206];
    if (!ok.includes(res.statusCode)) {
      const text = await res.body.text();
      let problem = null;
      if (String(res.headers['content-type'] ?? '').includes('json')) {
        try {
          problem = JSON.parse(text);
        } catch {
          problem = null;
        }
      }
      if (res.statusCode === 412 && problem?.errno === 'ESTALE' && boot !== undefined) {
        throw new KcovdRestartedError(problem, `${call.method} ${path}`, boot, typeof replyBoot === 'string' ? replyBoot : null);
      }
      throw new KcovdError(res.statusCode, problem, `${call.method} ${path}`, text);
    }
    return res;
  }

  async json<T>(call: Call): Promise<T> {
    const res = await this.request(call);
    if (res.statusCode === 204) {
      await res.body.dump();
      return undefined as T;
    }
    return (await res.body.json()) as T;
  }

  async text(call: Call): Promise<string> {
    return (await this.request(call)).body.text();
  }

  async bytes(call: Call): Promise<Uint8Array> {
    return new Uint8Array(await (await this.request(call)).body.arrayBuffer());
  }

  // service

  /** GET /healthz: true when the process answers 200. */
  async health(): Promise<boolean> {
    const res = await this.request({ method: 'GET', path: '/healthz', ok: [200, 503] });
    await res.body.dump();
    return res.statusCode === 200;
  }

  /** GET /readyz: false (503) while draining for shutdown. */
  ready(): Promise<{ ready: boolean; draining: boolean }> {
    return this.json({ method: 'GET', path: '/readyz', ok: [200, 503] });
  }

  /** GET /openapi.json: the service's OpenAPI 3.1 document. */
  openapi(): Promise<Record<string, unknown>> {
    return this.json({ method: 'GET', path: '/openapi.json' });
  }

  // kernels

  async kernels(): Promise<Kernel[]> {
    return (await this.json<z.output<typeof KernelList>>({ method: 'GET', path: '/v1/kernels' })).kernels;
  }

  createKernel(body: KernelCreateInput): Promise<Kernel> {
    return this.json({ method: 'POST', path: '/v1/kernels', json: body });
  }

  getKernel(name: string): Promise<Kernel> {
    return this.json({ method: 'GET', path: `/v1/kernels/${seg(name)}` });
  }

  deleteKernel(name: string): Promise<void> {
    return this.json({ method: 'DELETE', path: `/v1/kernels/${seg(name)}` });
  }

  /** Routes under /v1/kernels/{name}; `kernel<'openbsd'>('obsd')` types its ioctl names. */
  kernel<D extends DialectName = DialectName>(name = 'default'): KernelClient<D> {
    return new KernelClient<D>(this, name);
  }
}

/** Descriptors, coverage, threads, events, remotes and CPUs of one kernel. */
/** An ioctl as the route takes it: one of the dialect's names, or a request number (a number or 0x hex). */
export type IoctlCmd<D extends DialectName = DialectName> = IoctlName<D> | number | `0x${string}`;

export class KernelClient<D extends DialectName = DialectName> {
  readonly base: string;

  constructor(readonly client: KcovdClient, readonly name: string) {
    this.base = `/v1/kernels/${seg(name)}`;
  }

  info(): Promise<Kernel> {
    return this.client.getKernel(this.name);
  }

  delete(): Promise<void> {
    return this.client.deleteKernel(this.name);
  }

  // descriptors

  /** open("/dev/kcov") as thread tid. */
  open(tid?: number): Promise<Descriptor> {
    return this.client.json({ method: 'POST', path: `${this.base}/descriptors`, json: tid === undefined ? {} : { tid } });
  }

  async descriptors(): Promise<Descriptor[]> {
    return (await this.client.json<z.output<typeof DescriptorList>>({ method: 'GET', path: `${this.base}/descriptors` })).descriptors;
  }

  descriptor(fd: number): Promise<Descriptor> {
    return this.client.json({ method: 'GET', path: `${this.base}/descriptors/${fd}` });
  }

  close(fd: number): Promise<void> {
    return this.client.json({ method: 'DELETE', path: `${this.base}/descriptors/${fd}` });
  }

  /** ioctl(fd, cmd, arg) as thread tid; cmd is the dialect's name or request number (src/wire/ioctls.ts). */
  ioctl(fd: number, cmd: IoctlCmd<D>, tid: number, arg?: IoctlArg): Promise<IoctlResult> {
    const body: z.input<typeof IoctlBody> = { tid };
    if (arg !== undefined) body.arg = arg;
    return this.client.json({ method: 'POST', path: `${this.base}/descriptors/${fd}/ioctl/${seg(String(cmd))}`, json: body });
  }

  // coverage

  /** The records as JSON (hex strings). */
  coverage(fd: number, opts: CoverageOptions = {}): Promise<Coverage> {
    return this.client.json({ method: 'GET', path: `${this.base}/descriptors/${fd}/coverage`, query: { format: 'json', reset: opts.reset, mode: opts.mode } });
  }

  /** The whole area as userspace maps it, wrapped in a BigInt-free view. */
  async snapshot(fd: number, opts: { reset?: boolean } = {}): Promise<CoverageSnapshot> {
    return new CoverageSnapshot(await this.coverageBytes(fd, opts));
  }

  /** The area's raw bytes (a Range reads part of it). */
  coverageBytes(fd: number, opts: RawCoverageOptions = {}): Promise<Uint8Array> {
    const headers: Record<string, string> = {};
    if (opts.range !== undefined) headers.range = `bytes=${opts.range.start}-${opts.range.end ?? ''}`;
    return this.client.bytes({
      method: 'GET',
      path: `${this.base}/descriptors/${fd}/coverage`,
      query: { format: 'binary', reset: opts.reset },
      accept: 'application/octet-stream',
      headers,
    });
  }

  /** syz-manager /rawcover text: one 0x PC a line, ready for addr2line. */
  coverageText(fd: number, opts: CoverageOptions = {}): Promise<string> {
    return this.client.text({
      method: 'GET',
      path: `${this.base}/descriptors/${fd}/coverage`,
      query: { format: 'text', reset: opts.reset, mode: opts.mode },
      accept: 'text/plain',
    });
  }

  /** cover[0] = count. */
  setCount(fd: number, count: number): Promise<CountResult> {
    return this.client.json({ method: 'PUT', path: `${this.base}/descriptors/${fd}/coverage/count`, json: { count } });
  }

  // threads

  async threads(): Promise<Thread[]> {
    return (await this.client.json<z.output<typeof ThreadList>>({ method: 'GET', path: `${this.base}/threads` })).threads;
  }

  thread(tid: number): Promise<Thread> {
    return this.client.json({ method: 'GET', path: `${this.base}/threads/${tid}` });
  }

  /** Create a thread (fork/clone); the existing one when it is already there. */
  createThread(tid: number, body: ThreadCreateInput = {}): Promise<Thread> {
    return this.client.json({ method: 'PUT', path: `${this.base}/threads/${tid}`, json: body });
  }

  /** Thread exit, with the dialect's exit hook. */
  exitThread(tid: number): Promise<void> {
    return this.client.json({ method: 'DELETE', path: `${this.base}/threads/${tid}` });
  }

  /** A JSON batch of events executed by thread tid, in order. */
  events(tid: number, events: EventsInput): Promise<EventResult> {
    return this.client.json({ method: 'POST', path: `${this.base}/threads/${tid}/events`, json: events });
  }

  /** Packed records: PCs (kind pc, 8 bytes each) or type/arg1/arg2/pc quadruples (kind cmp, 32 bytes). */
  eventsBinary(tid: number, body: Binary, kind: RecordKind = 'pc'): Promise<EventResult> {
    return this.client.json({ method: 'POST', path: `${this.base}/threads/${tid}/events`, query: { kind }, binary: body });
  }

  /** Enter a remote section on this thread (kcov_remote_start / kcov_remote_enter). */
  enterRemote(tid: number, body: SectionInput): Promise<Thread> {
    return this.client.json({ method: 'POST', path: `${this.base}/threads/${tid}/remote`, json: body });
  }

  leaveRemote(tid: number): Promise<Thread> {
    return this.client.json({ method: 'DELETE', path: `${this.base}/threads/${tid}/remote` });
  }

  /** NetBSD kcov_silence_enter (true) / kcov_silence_leave (false). */
  silence(tid: number, on: boolean): Promise<Thread> {
    return this.client.json({ method: on ? 'PUT' : 'DELETE', path: `${this.base}/threads/${tid}/silence` });
  }

  /** A batcher that posts this thread's events in binary batches. */
  batcher(tid: number, opts: BatcherOptions = {}): EventBatcher {
    return new EventBatcher((body, kind) => this.eventsBinary(tid, body, kind), opts);
  }

  // remotes

  async remotes(): Promise<Remote[]> {
    return (await this.client.json<z.output<typeof RemoteList>>({ method: 'GET', path: `${this.base}/remotes` })).remotes;
  }

  /** BSD kcov_remote_register; `created` is false when it was already there. */
  registerRemote(remote: string): Promise<RemoteRegistration> {
    return this.client.json({ method: 'PUT', path: `${this.base}/remotes/${seg(remote)}` });
  }

  unregisterRemote(remote: string): Promise<void> {
    return this.client.json({ method: 'DELETE', path: `${this.base}/remotes/${seg(remote)}` });
  }

  /** One whole remote section (enter, the events, leave): JSON events or a binary body. */
  remoteEvents(remote: string, where: RemoteEventsOptions, events: EventsInput | Binary): Promise<EventResult> {
    const binary = ArrayBuffer.isView(events);
    return this.client.json({
      method: 'POST',
      path: `${this.base}/remotes/${seg(remote)}/events`,
      query: { ...where },
      ...(binary ? { binary: events } : { json: events }),
    });
  }

  // cpus

  async cpus(): Promise<Cpu[]> {
    return (await this.client.json<z.output<typeof CpuList>>({ method: 'GET', path: `${this.base}/cpus` })).cpus;
  }

  cpu(n: number): Promise<Cpu> {
    return this.client.json({ method: 'GET', path: `${this.base}/cpus/${n}` });
  }
}

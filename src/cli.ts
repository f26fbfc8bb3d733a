#!/usr/bin/env node
/**
 * kcovd command line: `kcovd serve` runs the service; the other commands
 * talk to one (--url or KCOVD_URL, token from --token or KCOV_TOKEN).
 * Exit status: 0 done, 1 the server refused (problem on stderr), 2 usage.
 */
import { createReadStream, realpathSync, statSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
// Types only: the client (and undici) load when a command needs them, so --help starts fast.
import type { EventResult, IoctlCmd, KcovdClient, KernelClient } from './client/client.js';
import { BinaryBatcher, sniff, TextBatcher, type InputFormat } from './cli/input.js';
import { Progress } from './cli/progress.js';
import { loadConfig, SETTINGS } from './config.js';
import { DIALECT_WIRE, hexNr } from './wire/ioctls.js';
import { DIALECT_NAMES, isDialectName } from './wire/names.js';

type Options = NonNullable<ParseArgsConfig['options']>;
type Values = Record<string, string | boolean | undefined>;

class UsageError extends Error {}

const GLOBAL: Options = {
  url: { type: 'string' },
  token: { type: 'string' },
  kernel: { type: 'string', short: 'k' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

const GLOBAL_HELP = `Options of every client command (before or after the command):
  --url URL          server (default $KCOVD_URL, else http://127.0.0.1:5268)
  --token TOKEN      bearer token (default $KCOV_TOKEN)
  -k, --kernel NAME  kernel (default "default")
  --json             print JSON replies instead of text
  -h, --help         this help`;

interface Command {
  usage: string;
  summary: string;
  help: string;
  options?: Options;
  /** Positional arguments taken (names, for the checks). */
  args?: string[];
  client?: boolean;
  run(ctx: Context): Promise<void>;
}

interface Context {
  values: Values;
  args: string[];
  client: KcovdClient;
  kernel: KernelClient;
  out: NodeJS.WritableStream;
  print(text: string, json: unknown): void;
}

function intArg(v: string | undefined, name: string): number {
  if (v === undefined || !/^\d+$/.test(v)) throw new UsageError(`${name}: expected a whole number, got ${v === undefined ? 'nothing' : `"${v}"`}`);
  return Number(v);
}

/** --arg: a JSON object/array, a decimal number, or a string (0x hex, "pc", "cmp"). */
function ioctlArg(v: string | undefined): unknown {
  if (v === undefined) return undefined;
  const s = v.trim();
  if (s.startsWith('{') || s.startsWith('[')) {
    try {
      return JSON.parse(s);
    } catch (err) {
      throw new UsageError(`--arg: not JSON: ${(err as Error).message}`);
    }
  }
  if (/^\d+$/.test(s) && Number.isSafeInteger(Number(s))) return Number(s);
  return s;
}

function wrap(text: string, width: number): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  return [...lines, line].join('\n');
}

/** The ioctls of each dialect, from the wire table. */
function ioctlHelp(): string {
  return DIALECT_NAMES.map((d) => {
    const w = DIALECT_WIRE[d];
    const rows = w.ioctls.map((c) => `  ${c.name.padEnd(24)} ${hexNr(c.nr).padEnd(10)} ${c.arg === 'none' ? 'no argument' : c.doc}`);
    return `${d} (${w.header}; unknown requests: ${w.unknownIoctl}):\n${rows.join('\n')}`;
  }).join('\n\n');
}

function table(rows: Record<string, unknown>[], cols: string[]): string {
  const cells = rows.map((r) => cols.map((c) => (r[c] === null || r[c] === undefined ? '-' : typeof r[c] === 'object' ? JSON.stringify(r[c]) : String(r[c]))));
  const widths = cols.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (xs: string[]) => xs.map((x, i) => x.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(cols.map((c) => c.toUpperCase())), ...cells.map(line)].join('\n') + '\n';
}

function summary(r: EventResult): string {
  return `accepted ${r.accepted}, dropped ${r.dropped}, ignored ${r.ignored}, count ${r.count ?? '-'}\n`;
}

const COMMANDS: Record<string, Command> = {
  serve: {
    usage: 'kcovd serve [--port N] [--host H] [--dialect D] [--ncpus N] [--memory-limit SIZE] [--token T] [--log-level L]',
    summary: 'start the server',
    help: `Starts the service with the same settings as \`npm start\`: environment variables,
each overridable by a flag (--port 8080, --dialect openbsd, --memory-limit 512M, ...).
SIGTERM/SIGINT drain and exit. Settings (docs/configuration.md):
${wrap(SETTINGS.map((s) => s.env).join(', '), 80)}`,
    async run() {
      /* handled in main: its flags are the server's, not parseArgs' */
    },
  },
  health: {
    usage: 'kcovd health',
    summary: 'check that the server answers /healthz and /readyz',
    help: 'Exit status 0 when /healthz answers 200 and the server is not draining.',
    client: true,
    async run(ctx) {
      const live = await ctx.client.health();
      const ready = live ? await ctx.client.ready() : { ready: false, draining: false };
      ctx.print(`${live && ready.ready ? 'ok' : 'not ready'} ${ctx.client.url.origin}\n`, { live, ...ready });
      if (!(live && ready.ready)) process.exitCode = 1;
    },
  },
  kernels: {
    usage: 'kcovd kernels',
    summary: 'list kernels',
    help: 'One line a kernel: name, dialect, CPUs, open descriptors, threads, remotes, bytes held.',
    client: true,
    async run(ctx) {
      const ks = await ctx.client.kernels();
      ctx.print(table(ks, ['name', 'dialect', 'ncpus', 'descriptors', 'threads', 'remotes', 'memory']), { kernels: ks });
    },
  },
  'create-kernel': {
    usage: 'kcovd create-kernel --dialect D [--name N] [--ncpus N] [--max-entries N]',
    summary: 'create a kernel of a dialect',
    help: `Dialects: ${DIALECT_NAMES.join(', ')}. Prints the new kernel's name.`,
    options: { dialect: { type: 'string' }, name: { type: 'string' }, ncpus: { type: 'string' }, 'max-entries': { type: 'string' } },
    client: true,
    async run(ctx) {
      const v = ctx.values;
      if (v.dialect === undefined) throw new UsageError('--dialect is required');
      const dialect = v.dialect as string;
      if (!isDialectName(dialect)) throw new UsageError(`--dialect: one of ${DIALECT_NAMES.join(', ')}`);
      const k = await ctx.client.createKernel({
        dialect,
        ...(v.name !== undefined ? { name: v.name as string } : {}),
        ...(v.ncpus !== undefined ? { ncpus: intArg(v.ncpus as string, '--ncpus') } : {}),
        ...(v['max-entries'] !== undefined ? { max_entries: intArg(v['max-entries'] as string, '--max-entries') } : {}),
      });
      ctx.print(`${k.name}\n`, k);
    },
  },
  'delete-kernel': {
    usage: 'kcovd delete-kernel NAME',
    summary: 'tear a kernel down with everything in it',
    help: '',
    args: ['NAME'],
    client: true,
    async run(ctx) {
      await ctx.client.deleteKernel(ctx.args[0]!);
      ctx.print('', { deleted: ctx.args[0] });
    },
  },
  descriptors: {
    usage: 'kcovd descriptors [-k KERNEL]',
    summary: 'list open descriptors',
    help: 'One line a descriptor: fd, driver state, mode, words, count, capacity, owner tid.',
    client: true,
    async run(ctx) {
      const ds = await ctx.kernel.descriptors();
      ctx.print(table(ds, ['fd', 'state', 'mode', 'words', 'count', 'capacity', 'owner']), { descriptors: ds });
    },
  },
  open: {
    usage: 'kcovd open [--tid N] [-k KERNEL]',
    summary: 'open the kcov device; prints the fd',
    help: 'fd=$(kcovd open --tid 1) gives a script the new descriptor.',
    options: { tid: { type: 'string' } },
    client: true,
    async run(ctx) {
      const d = await ctx.kernel.open(ctx.values.tid === undefined ? undefined : intArg(ctx.values.tid as string, '--tid'));
      ctx.print(`${d.fd}\n`, d);
    },
  },
  close: {
    usage: 'kcovd close FD [-k KERNEL]',
    summary: "close a descriptor, with the dialect's close semantics",
    help: '',
    args: ['FD'],
    client: true,
    async run(ctx) {
      await ctx.kernel.close(intArg(ctx.args[0], 'FD'));
      ctx.print('', { closed: Number(ctx.args[0]) });
    },
  },
  ioctl: {
    usage: 'kcovd ioctl FD CMD --tid N [--arg VALUE] [-k KERNEL]',
    summary: 'issue an ioctl as thread N',
    help: `CMD is the dialect's name or its request number (decimal or 0x hex).
VALUE is a number (sizes), a mode name (pc, cmp), 0x hex, or a JSON object
(KCOV_REMOTE_ENABLE: '{"trace_mode":"pc","area_size":64,"handles":["0x0100000000000001"]}').
Prints the descriptor's state after the call.

${ioctlHelp()}`,
    options: { tid: { type: 'string' }, arg: { type: 'string' } },
    args: ['FD', 'CMD'],
    client: true,
    async run(ctx) {
      const tid = intArg(ctx.values.tid as string | undefined, '--tid');
      // The server checks the name against the kernel's dialect.
      const r = await ctx.kernel.ioctl(intArg(ctx.args[0], 'FD'), ctx.args[1]! as IoctlCmd, tid, ioctlArg(ctx.values.arg as string | undefined) as never);
      const d = r.descriptor;
      ctx.print(`ret ${r.ret}: fd ${d.fd} ${d.state} mode ${d.mode ?? '-'} words ${d.words ?? '-'} count ${d.count ?? '-'}\n`, r);
    },
  },
  threads: {
    usage: 'kcovd threads [-k KERNEL]',
    summary: 'list threads',
    help: 'One line a thread: tid, pid, enabled fd, Linux common handle, kcov mode.',
    client: true,
    async run(ctx) {
      const ts = await ctx.kernel.threads();
      ctx.print(table(ts, ['tid', 'pid', 'fd', 'handle', 'mode', 'silenced']), { threads: ts });
    },
  },
  events: {
    usage: 'kcovd events --tid N [--kind pc|cmp] [--format auto|binary|json|text] [--batch RECORDS] [FILE|-]',
    summary: 'post events executed by thread N, from a file or stdin',
    help: `Formats (auto picks from the first bytes):
  binary  packed little-endian records: 8-byte PCs, or 32-byte type/arg1/arg2/pc (--kind cmp)
  json    one events object: {"pcs": [...], "cmps": [...], "switches": [...], "sites": [...]}
  text    one 0x PC a line (--kind cmp: "type arg1 arg2 pc"); blank lines and # comments skipped
Binary and text go in batches of --batch records (default 65536), in order; a
progress bar is drawn on stderr when it is a terminal (--no-progress: never).`,
    options: {
      tid: { type: 'string' },
      kind: { type: 'string' },
      format: { type: 'string' },
      batch: { type: 'string' },
      'no-progress': { type: 'boolean' },
    },
    client: true,
    async run(ctx) {
      const tid = intArg(ctx.values.tid as string | undefined, '--tid');
      const kind = (ctx.values.kind ?? 'pc') as string;
      if (kind !== 'pc' && kind !== 'cmp') throw new UsageError('--kind: pc or cmp');
      const format = (ctx.values.format ?? 'auto') as string;
      if (!['auto', 'binary', 'json', 'text'].includes(format)) throw new UsageError('--format: auto, binary, json or text');
      const batch = ctx.values.batch === undefined ? 65536 : intArg(ctx.values.batch as string, '--batch');
      if (batch < 1) throw new UsageError('--batch: at least 1');
      if (ctx.args.length > 1) throw new UsageError('one input file at most');
      const file = ctx.args[0] ?? '-';
      let total: number | null = null;
      let stream: Readable;
      if (file === '-') {
        stream = process.stdin;
      } else {
        try {
          const st = statSync(file);
          if (st.isFile()) total = st.size;
        } catch (err) {
          throw new UsageError(`${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        }
        stream = createReadStream(file, { highWaterMark: 1 << 20 });
      }
      const progress = new Progress(process.stderr, total, ctx.values['no-progress'] === true ? false : process.stderr.isTTY === true);
      const sum = { accepted: 0, dropped: 0, ignored: 0, count: null as number | null, requests: 0, records: 0 };
      const add = (r: EventResult, records: number) => {
        sum.accepted += r.accepted;
        sum.dropped += r.dropped;
        sum.ignored += r.ignored;
        if (r.count !== null) sum.count = r.count;
        sum.requests++;
        sum.records += records;
      };
      const recordBytes = kind === 'pc' ? 8 : 32;
      let seen = 0;
      const post = async (body: Uint8Array) => {
        add(await ctx.kernel.eventsBinary(tid, body, kind), Math.floor(body.length / recordBytes));
        progress.update(seen, sum.records);
      };

      let fmt: InputFormat | null = format === 'auto' ? null : (format as InputFormat);
      let bin: BinaryBatcher | null = null;
      let txt: TextBatcher | null = null;
      const jsonParts: Buffer[] = [];
      try {
        for await (const raw of stream) {
          const chunk = raw as Buffer;
          seen += chunk.length;
          if (fmt === null) fmt = sniff(chunk);
          if (fmt === 'json') {
            jsonParts.push(chunk);
            continue;
          }
          if (fmt === 'binary') {
            bin ??= new BinaryBatcher(batch * recordBytes);
            for (const body of bin.push(chunk)) await post(body);
          } else {
            txt ??= new TextBatcher(kind, batch);
            for (const body of txt.push(chunk)) await post(body);
          }
          progress.update(seen, sum.records);
        }
        if (fmt === 'json') {
          const text = Buffer.concat(jsonParts).toString('utf8');
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch (err) {
            throw new UsageError(`input is not JSON: ${(err as Error).message}`);
          }
          const body = Array.isArray(parsed) ? { pcs: parsed } : parsed;
          add(await ctx.kernel.events(tid, body as never), 0);
        } else if (bin !== null) {
          const rest = bin.rest();
          if (rest !== null) await post(rest);
        } else if (txt !== null) {
          for (const body of txt.end()) await post(body);
        }
      } catch (err) {
        if (err instanceof Error && /^line \d+:/.test(err.message)) throw new UsageError(err.message);
        throw err;
      } finally {
        progress.done();
      }
      if (fmt === 'json') sum.records = sum.accepted + sum.dropped + sum.ignored;
      ctx.print(`posted ${sum.records} records in ${sum.requests} requests: ${summary(sum)}`, sum);
    },
  },
  cover: {
    usage: 'kcovd cover FD [--format text|json|raw] [--mode pc|cmp] [--reset] [-k KERNEL]',
    summary: 'dump a descriptor\'s coverage',
    help: `text (default): one 0x PC a line, syz-manager's /rawcover format, so
  kcovd cover 3 | addr2line -e vmlinux
works (CMP mode: "type arg1 arg2 pc" a line). json: the records as JSON. raw: the
whole area as userspace maps it (word 0 the count, little-endian words).
--reset reads and sets the count to 0 in one step.`,
    options: { format: { type: 'string' }, mode: { type: 'string' }, reset: { type: 'boolean' } },
    args: ['FD'],
    client: true,
    async run(ctx) {
      const fd = intArg(ctx.args[0], 'FD');
      const format = (ctx.values.format ?? (ctx.values.json === true ? 'json' : 'text')) as string;
      const mode = ctx.values.mode as 'pc' | 'cmp' | undefined;
      if (mode !== undefined && mode !== 'pc' && mode !== 'cmp') throw new UsageError('--mode: pc or cmp');
      const reset = ctx.values.reset === true;
      if (format === 'text') {
        ctx.out.write(await ctx.kernel.coverageText(fd, { reset, mode }));
      } else if (format === 'json') {
        ctx.out.write(JSON.stringify(await ctx.kernel.coverage(fd, { reset, mode })) + '\n');
      } else if (format === 'raw') {
        ctx.out.write(await ctx.kernel.coverageBytes(fd, { reset }));
      } else {
        throw new UsageError('--format: text, json or raw');
      }
    },
  },
};

function mainHelp(): string {
  const w = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return `kcovd: kernel coverage devices (kcov) over HTTP

Usage: kcovd [global options] <command> [options]

Commands:
${Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(w)}  ${c.summary}`).join('\n')}

\`kcovd <command> --help\` describes one. Environment: KCOVD_URL, KCOV_TOKEN.
Global options, before or after the command: --url, --token, -k/--kernel, --json.
`;
}

function commandHelp(name: string, c: Command): string {
  return `Usage: ${c.usage}\n\n${c.summary}.\n${c.help === '' ? '' : `\n${c.help}\n`}${c.client === true ? `\n${GLOBAL_HELP}\n` : ''}`;
}

/** The long or short name of a global option an argument is, or undefined. */
function globalOption(arg: string): { name: string; inline: boolean } | undefined {
  if (arg.startsWith('--')) {
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    return Object.hasOwn(GLOBAL, name) ? { name, inline: eq >= 0 } : undefined;
  }
  if (arg.length >= 2 && arg[0] === '-' && arg[1] !== '-') {
    const entry = Object.entries(GLOBAL).find(([, o]) => o.short === arg[1]);
    return entry === undefined ? undefined : { name: entry[0], inline: arg.length > 2 };
  }
  return undefined;
}

/**
 * Global options may come before the command (\`kcovd -k obsd kernels\`) or after it:
 * the ones before are moved behind it, where parseArgs reads them.
 */
export function splitCommand(argv: readonly string[]): { name: string | undefined; rest: string[]; globals: string[] } {
  const globals: string[] = [];
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    const g = globalOption(a);
    if (g === undefined) break;
    globals.push(a);
    if (GLOBAL[g.name]!.type === 'string' && !g.inline && i + 1 < argv.length) globals.push(argv[++i]!);
  }
  return { name: argv[i], rest: [...argv.slice(i + 1), ...globals], globals };
}

export async function main(argv: string[]): Promise<number> {
  const split = splitCommand(argv);
  const { name, rest } = split;
  if (name !== undefined && name.startsWith('-') && name !== '--help' && name !== '-h') {
    process.stderr.write(`kcovd: unknown option "${name}"\n\n${mainHelp()}`);
    return 2;
  }
  if (name === undefined && split.globals.length > 0) {
    const help = split.globals.includes('--help') || split.globals.includes('-h');
    if (!help) process.stderr.write(`kcovd: options but no command\n\n`);
    (help ? process.stdout : process.stderr).write(mainHelp());
    return help ? 0 : 2;
  }
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const sub = name === 'help' ? rest[0] : undefined;
    if (sub !== undefined && COMMANDS[sub] !== undefined) process.stdout.write(commandHelp(sub, COMMANDS[sub]));
    else process.stdout.write(mainHelp());
    return name === undefined ? 2 : 0;
  }
  const cmd = COMMANDS[name];
  if (cmd === undefined) {
    process.stderr.write(`kcovd: unknown command "${name}"\n\n${mainHelp()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(commandHelp(name, cmd));
    return 0;
  }
  if (name === 'serve') {
    if (split.globals.length > 0) {
      process.stderr.write(`kcovd serve: ${split.globals[0]} is an option of the client commands\nUsage: ${cmd.usage}\n`);
      return 2;
    }
    const { start } = await import('./server.js');
    try {
      await start(loadConfig(process.env, rest));
    } catch (err) {
      if (err instanceof Error && !('code' in err)) {
        process.stderr.write(`kcovd serve: ${err.message}\n`);
        return 2;
      }
      throw err;
    }
    return -1; // keep running
  }

  let values: Values;
  let args: string[];
  try {
    const parsed = parseArgs({ args: rest, options: { ...GLOBAL, ...cmd.options }, allowPositionals: true, strict: true });
    values = parsed.values as Values;
    args = parsed.positionals;
    const want = cmd.args ?? [];
    if (args.length < want.length) throw new UsageError(`missing ${want.slice(args.length).join(' ')}`);
    if (name !== 'events' && args.length > want.length) throw new UsageError(`unexpected argument "${args[want.length]}"`);
  } catch (err) {
    process.stderr.write(`kcovd ${name}: ${(err as Error).message}\nUsage: ${cmd.usage}\n`);
    return 2;
  }

  const { KcovdClient } = await import('./client/client.js');
  const { KcovdError, KcovdRestartedError } = await import('./client/errors.js');
  const client = new KcovdClient({ url: values.url as string | undefined, token: values.token as string | undefined, connections: 1 });
  const json = values.json === true;
  const ctx: Context = {
    values,
    args,
    client,
    kernel: client.kernel((values.kernel as string | undefined) ?? 'default'),
    out: process.stdout,
    print(text, data) {
      process.stdout.write(json ? JSON.stringify(data) + '\n' : text);
    },
  };
  try {
    await cmd.run(ctx);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`kcovd ${name}: ${err.message}\nUsage: ${cmd.usage}\n`);
      return 2;
    }
    if (err instanceof KcovdRestartedError) {
      // One invocation works with one start of the service; what it opened before is gone.
      const detail = `the service at ${client.url.origin} restarted during this command (boot ${err.previousBoot}${err.currentBoot === null ? '' : `, now ${err.currentBoot}`}); ` +
        'its descriptors and threads from before are gone, nothing more was done';
      process.stderr.write(json ? JSON.stringify({ ...err.toJSON(), detail }) + '\n' : `kcovd ${name}: ESTALE: ${detail}\n`);
      return 1;
    }
    if (err instanceof KcovdError) {
      process.stderr.write(json ? JSON.stringify(err.toJSON()) + '\n' : `kcovd ${name}: ${err.errno ?? `HTTP ${err.status}`}${err.code === null ? '' : ` (${err.code})`}: ${err.detail}\n`);
      return 1;
    }
    const e = err as NodeJS.ErrnoException;
    process.stderr.write(`kcovd ${name}: ${e.code === 'ECONNREFUSED' ? `cannot reach ${client.url.origin} (is kcovd serve running? --url / KCOVD_URL)` : e.message}\n`);
    return 1;
  } finally {
    await client.close();
  }
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
if (isMain) {
  main(process.argv.slice(2)).then(
    (code) => {
      if (code >= 0) process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`kcovd: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}

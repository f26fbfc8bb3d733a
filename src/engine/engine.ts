/**
 * The set of kernels a kcovd process emulates, and the memory budget they share.
 */
import { DIALECTS } from './dialects/index.js';
import { fail, type DialectName } from './errno.js';
import { checkInvariants } from './invariants.js';
import { Kernel, type KernelCaps } from './kernel.js';
import { MemoryBudget } from './memory.js';
import { KERNEL_NAME_RE } from '../wire/names.js';

export interface EngineOptions {
  /** Dialect of the `default` kernel. */
  readonly dialect: DialectName;
  /** CPUs of a kernel created without `ncpus`. */
  readonly ncpus: number;
  /** Bytes all areas together may take (KCOV_MEMORY_LIMIT). */
  readonly memoryLimit: number;
  /** Words of each per-CPU remote area; the dialect's default when absent. */
  readonly cpuAreaWords?: number | undefined;
  /** Kernels that may exist at once (KCOV_MAX_KERNELS); past it, ENOMEM. */
  readonly maxKernels?: number | undefined;
  /** Caps each kernel gets (KCOV_MAX_DESCRIPTORS, KCOV_MAX_THREADS, ...). */
  readonly kernelCaps?: KernelCaps | undefined;
  /** Bytes the cover unions may take together (KCOV_COVER_LIMIT); ⅛ of memoryLimit when absent. */
  readonly coverLimit?: number | undefined;
  /** Bytes of freed areas kept for reuse (KCOV_AREA_POOL); ¼ of memoryLimit, at most 256 MiB, when absent. */
  readonly areaPool?: number | undefined;
  /** Keep a cover union per kernel (KCOV_COVER, default on). */
  readonly cover?: boolean | undefined;
}

export interface CreateKernel {
  readonly name?: string | undefined;
  readonly dialect: DialectName;
  readonly ncpus?: number | undefined;
  readonly maxEntries?: number | undefined;
  /** Changes to the dialect's build options (Linux CONFIG_KCOV_*). */
  readonly config?: Readonly<Record<string, boolean>> | undefined;
  /** Fleet name of the kernel's cover union; the kernel's name when absent. */
  readonly corpus?: string | undefined;
}


export class Engine {
  readonly budget: MemoryBudget;
  readonly options: EngineOptions;
  /** [E] kernels by name. */
  private readonly byName = new Map<string, Kernel>();
  private serial = 0;
  /**
   * [I] how the engine runs work later (the HTTP layer: a timer for `idle`, at the
   * next pause in the traffic; setImmediate otherwise): the cover union folds
   * appended records a slice at a time there. Null: only the gates fold (tests, pure use).
   */
  background: ((fn: () => void, idle: boolean) => void) | null = null;

  constructor(options: EngineOptions) {
    this.options = options;
    this.budget = new MemoryBudget(
      options.memoryLimit,
      options.areaPool ?? Math.min(256 * 1024 ** 2, Math.floor(options.memoryLimit / 4)),
      options.coverLimit ?? Math.floor(options.memoryLimit / 8),
    );
    // Freed areas waiting for their fold give their room back before a charge fails.
    this.budget.reclaim = () => this.settleFreed();
    this.createKernel({ name: 'default', dialect: options.dialect });
  }

  /**
   * Fold and give back the freed areas the unions keep until their fold: before a view
   * reports memory, so that what a kernel frees (a close, a thread exit) is seen freed at
   * once, as the kernel frees it.
   */
  settleFreed(): void {
    for (const k of this.byName.values()) k.cover.flushRetired();
  }

  createKernel(req: CreateKernel): Kernel {
    const dialect = DIALECTS[req.dialect];
    if (dialect === undefined) fail('EOPNOTSUPP', `dialect "${req.dialect}" is not implemented by this build`);
    let name = req.name;
    if (name === undefined) {
      do name = `k${++this.serial}`; while (this.byName.has(name));
    }
    if (!KERNEL_NAME_RE.test(name)) fail('EINVAL', `kernel name "${name}" must match ${KERNEL_NAME_RE.source}`);
    if (this.byName.has(name)) fail('EEXIST', `kernel "${name}" already exists`);
    if (req.corpus !== undefined && !KERNEL_NAME_RE.test(req.corpus)) fail('EINVAL', `corpus "${req.corpus}" must match ${KERNEL_NAME_RE.source}`);
    const max = this.options.maxKernels;
    if (max !== undefined && this.byName.size >= max) fail('ENOMEM', `already ${max} kernels (KCOV_MAX_KERNELS)`);
    if (req.maxEntries !== undefined) {
      const lim = dialect.limits(undefined);
      if (req.maxEntries < lim.minEntries) {
        fail('EINVAL', `max_entries ${req.maxEntries} is below the dialect's minimum of ${lim.minEntries}`);
      }
    }
    const defaults = dialect.config ?? {};
    for (const key of Object.keys(req.config ?? {})) {
      if (!Object.hasOwn(defaults, key)) {
        const known = Object.keys(defaults);
        fail('EINVAL', `config ${key} is not a ${dialect.name} build option` + (known.length > 0 ? ` (known: ${known.join(', ')})` : ''));
      }
    }
    const kernel = new Kernel({
      config: { ...defaults, ...req.config },
      name,
      dialect,
      ncpus: req.ncpus ?? this.options.ncpus,
      budget: this.budget,
      maxEntries: req.maxEntries,
      cpuAreaWords: this.options.cpuAreaWords,
      caps: this.options.kernelCaps,
      corpus: req.corpus,
      cover: this.options.cover,
      later: (fn, idle) => {
        if (this.background === null) return false;
        this.background(fn, idle);
        return true;
      },
    });
    this.byName.set(name, kernel);
    return kernel;
  }

  /** Kernels by name. */
  get kernels(): ReadonlyMap<string, Kernel> {
    return this.byName;
  }

  kernel(name: string): Kernel {
    const k = this.byName.get(name);
    if (k === undefined) fail('ENOENT', `no kernel "${name}"`);
    return k;
  }

  deleteKernel(name: string): void {
    const k = this.kernel(name);
    k.destroy();
    this.byName.delete(name);
  }

  /** Broken invariants, one line each; empty when the model is consistent. */
  checkInvariants(): string[] {
    return checkInvariants(this);
  }

  /** Release everything (shutdown). */
  close(): void {
    for (const name of [...this.byName.keys()]) this.deleteKernel(name);
  }
}

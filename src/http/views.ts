/** JSON shapes of engine objects, as the routes return them. */
import { strideOf } from '../engine/area.js';
import type { Kernel } from '../engine/kernel.js';
import type { Descriptor, Section, Thread } from '../engine/model.js';

export function kernelView(k: Kernel, boot: string) {
  const lim = k.limits();
  return {
    name: k.name,
    boot,
    dialect: k.dialect.name,
    ncpus: k.ncpus,
    descriptors: k.descriptors.size,
    threads: k.threads.size,
    remotes: k.remotes.count,
    memory: k.memory,
    max_entries: lim.maxEntries,
    min_entries: lim.minEntries,
    config: k.config,
  };
}

export function descriptorView(d: Descriptor) {
  const trace = d.trace();
  const mode = d.mode ?? d.lastMode;
  return {
    fd: d.fd,
    state: d.state,
    mode: d.mode,
    words: d.area === null ? null : d.area.words,
    count: trace === null ? null : trace.count,
    capacity: trace === null ? null : trace.capacity(strideOf(mode)),
    owner: d.owner === null ? null : d.owner.tid,
    closed: d.closed,
    remote: null,
    ...d.extra(),
  };
}

export function sectionView(s: Section | null) {
  if (s === null) return null;
  return { remote: s.remote, context: s.context };
}

export function threadView(t: Thread) {
  const x = t.extra();
  return {
    tid: t.tid,
    pid: t.pid,
    fd: t.kcov === null ? null : t.kcov.fd,
    handle: x.handle,
    section: sectionView(t.section),
    silenced: x.silenced,
    mode: x.mode,
  };
}

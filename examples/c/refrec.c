/*
 * refrec.c: the local reference recorder the runtime is measured against.
 * The same hooks as kcovd_rt, recording as a kcov kernel does: each thread its
 * own area (mmap'd on its first record), word 0 the record count, then the
 * records (a PC one word, a comparison four); no locks, no allocation in the
 * hook. At thread exit, exit() and SIGABRT each area is written to
 * $REFREC_DIR/<kind>.<tid> as raw little-endian words (count word included);
 * the test compares those files with what kcovd holds. Compile WITHOUT coverage flags.
 *   REFREC_DIR    where to write (unset: nothing is written)
 *   REFREC_WORDS  area words per thread and kind (default 1 << 27)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define KCOVD_RT_INTERNAL
#include "kcovd_rt.h"

struct areas {
  uint64_t *a[2];
  long tid;
};
static __thread uint64_t *pc_area __attribute__((tls_model("initial-exec")));
static __thread uint64_t *cmp_area __attribute__((tls_model("initial-exec")));
static __thread struct areas mine __attribute__((tls_model("initial-exec")));
static __thread int dead __attribute__((tls_model("initial-exec")));
static uint64_t cap_words = 1ULL << 27;
static pthread_key_t key;
static const char *dir;

NOINSTR static void dump(struct areas *m) {
  if (dir == NULL) return;
  for (int k = 0; k < 2; k++) {
    uint64_t *a = m->a[k];
    if (a == NULL) continue;
    uint64_t words = 1 + a[0] * (k == 0 ? 1 : 4);
    if (words > cap_words) words = cap_words;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.%ld", dir, k == 0 ? "pc" : "cmp", m->tid);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) continue;
    const char *p = (const char *)a;
    size_t left = words * 8;
    while (left > 0) {
      ssize_t w = write(fd, p, left);
      if (w <= 0) break;
      p += w;
      left -= (size_t)w;
    }
    close(fd);
  }
}

NOINSTR static void thread_done(void *p) {
  (void)p;
  dead = 1;
  dump(&mine);
}

NOINSTR static void at_exit(void) {
  dead = 1;
  dump(&mine);
}

NOINSTR static void on_abort(int sig) {
  at_exit();
  signal(sig, SIG_DFL);
  raise(sig);
}

/* A fork child records into areas of its own, under its own tid (the parent's stay the parent's). */
NOINSTR static void child(void) {
  pc_area = cmp_area = NULL;
  memset(&mine, 0, sizeof mine);
}

__attribute__((constructor(101))) NOINSTR static void init(void) {
  pthread_atfork(NULL, NULL, child);
  dir = getenv("REFREC_DIR");
  const char *w = getenv("REFREC_WORDS");
  if (w != NULL) cap_words = strtoull(w, NULL, 0);
  pthread_key_create(&key, thread_done);
  atexit(at_exit);
  signal(SIGABRT, on_abort);
}

NOINSTR __attribute__((noinline)) static uint64_t *area(int k) {
  if (dead) return NULL;
  uint64_t *a = mmap(NULL, cap_words * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (a == MAP_FAILED) {
    dead = 1;
    return NULL;
  }
  mine.a[k] = a;
  mine.tid = (long)syscall(SYS_gettid);
  pthread_setspecific(key, &mine);
  if (k == 0) pc_area = a;
  else cmp_area = a;
  return a;
}

NOINSTR static inline void add_pc(uint64_t pc) {
  uint64_t *a = pc_area;
  if (UNLIKELY(a == NULL) && (a = area(0)) == NULL) return;
  uint64_t n = a[0];
  if (n + 1 < cap_words) {
    a[n + 1] = pc;
    a[0] = n + 1;
  }
}

NOINSTR void __sanitizer_cov_trace_pc(void) { add_pc(RET_IP); }
NOINSTR void __sanitizer_cov_trace_pc_guard_init(uint32_t *start, uint32_t *stop) {
  static uint32_t n;
  if (start == stop || *start != 0) return;
  for (uint32_t *g = start; g < stop; g++) *g = ++n;
}
NOINSTR void __sanitizer_cov_trace_pc_guard(uint32_t *guard) {
  if (*guard != 0) add_pc(RET_IP);
}

NOINSTR static inline void add_cmp(uint64_t type, uint64_t a1, uint64_t a2, uint64_t ip) {
  uint64_t *a = cmp_area;
  if (UNLIKELY(a == NULL) && (a = area(1)) == NULL) return;
  uint64_t n = a[0];
  if ((n + 1) * 4 + 1 <= cap_words) {
    uint64_t *r = a + 1 + n * 4;
    r[0] = type;
    r[1] = a1;
    r[2] = a2;
    r[3] = ip;
    a[0] = n + 1;
  }
}
NOINSTR void __sanitizer_cov_trace_cmp1(uint8_t a, uint8_t b) { add_cmp(0, a, b, RET_IP); }
NOINSTR void __sanitizer_cov_trace_cmp2(uint16_t a, uint16_t b) { add_cmp(2, a, b, RET_IP); }
NOINSTR void __sanitizer_cov_trace_cmp4(uint32_t a, uint32_t b) { add_cmp(4, a, b, RET_IP); }
NOINSTR void __sanitizer_cov_trace_cmp8(uint64_t a, uint64_t b) { add_cmp(6, a, b, RET_IP); }
NOINSTR void __sanitizer_cov_trace_const_cmp1(uint8_t a, uint8_t b) { add_cmp(1, a, b, RET_IP); }
NOINSTR void __sanitizer_cov_trace_const_cmp2(uint16_t a, uint16_t b) { add_cmp(3, a, b, RET_IP); }
NOINSTR void __sanitizer_cov_trace_const_cmp4(uint32_t a, uint32_t b) { add_cmp(5, a, b, RET_IP); }
NOINSTR void __sanitizer_cov_trace_const_cmp8(uint64_t a, uint64_t b) { add_cmp(7, a, b, RET_IP); }
NOINSTR void __sanitizer_cov_trace_switch(uint64_t val, uint64_t *cases) {
  uint64_t type = 1;
  switch (cases[1]) {
    case 8: break;
    case 16: type |= 2; break;
    case 32: type |= 4; break;
    case 64: type |= 6; break;
    default: return;
  }
  uint64_t ip = RET_IP;
  for (uint64_t i = 0; i < cases[0]; i++) add_cmp(type, cases[i + 2], val, ip);
}
NOINSTR void __sanitizer_cov_trace_cmpf(float a, float b) { (void)a; (void)b; }
NOINSTR void __sanitizer_cov_trace_cmpd(double a, double b) { (void)a; (void)b; }

/* The programs call the runtime's API; here it has nothing to report. */
NOINSTR int kcovd_flush(void) { return 0; }
NOINSTR int kcovd_fd(void) { return -1; }
NOINSTR long kcovd_tid(void) { return (long)syscall(SYS_gettid); }
NOINSTR int kcovd_stats(struct kcovd_stats *st) {
  if (st != NULL) memset(st, 0, sizeof *st);
  return 0;
}

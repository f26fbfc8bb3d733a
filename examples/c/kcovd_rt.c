/*
 * kcovd_rt.c: a SanitizerCoverage runtime that ships records to kcovd.
 * Settings and guarantees: docs/c-runtime.md. This file must not be
 * instrumented itself (the Makefile compiles it without coverage flags, and
 * every function is marked no_sanitize_coverage where the compiler knows it).
 *
 * Records are the kernel's (Linux kernel/kcov.c): a PC is one 64-bit word, a
 * comparison four: type (KCOV_CMP_SIZE(n) | KCOV_CMP_CONST), arg1, arg2, pc.
 * Words are little-endian on the wire, as on x86-64 and arm64.
 *
 * Design, in one paragraph. Each thread that traces owns a slot: per kind (pc,
 * cmp) a ring of KCOVD_BUFFERS buffers of KCOVD_BATCH words, reserved before
 * main. The hook appends to the thread's current buffer under a per-thread
 * "busy" flag (a hook that finds it set ran inside a hook, i.e. in a signal
 * handler, and only counts itself as lost). A full buffer is published
 * (filled++) and the thread moves to the next free one; one sender thread
 * posts published buffers in order, each as one writev of header and body,
 * and frees them (drained++). When no buffer is free the thread waits up to
 * KCOVD_WAIT_MS, then drops and counts until one is free again.
 */
#define _GNU_SOURCE
#define KCOVD_RT_INTERNAL
#include "kcovd_rt.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define BARRIER() __asm__ __volatile__("" ::: "memory")

#define KCOV_CMP_CONST 1u
#define KCOV_CMP_SIZE(n) ((uint64_t)(n) << 1)
#define MAX_RING 64
#define MAX_ADDRS 4

enum { K_PC = 0, K_CMP = 1, NKINDS = 2 };
enum { SLOT_FREE = 0, SLOT_ACTIVE = 1, SLOT_EXITING = 2, SLOT_CLAIMING = 3 };

/* ---- configuration (read once, before main) ------------------------------ */

static struct {
  int ok;                   /* usable: the runtime runs */
  char kernel[128];
  char hosthdr[300];        /* Host: header value */
  char auth[600];           /* "Authorization: Bearer ...\r\n" or "" */
  int want[NKINDS];         /* kinds recorded */
  char enable[8];           /* "pc", "cmp" or "" (KCOVD_ENABLE) */
  long words;               /* area words, 0: the dialect's default */
  long tid;                 /* KCOVD_TID or 0 */
  long batch;               /* words per buffer */
  int nbuf;                 /* buffers per ring */
  int nslots;               /* thread slots */
  long wait_ms, timeout_ms, exit_ms;
  int fork_trace;           /* KCOVD_FORK=trace */
  int close_at_exit;        /* KCOVD_CLOSE=1 */
  int signals;              /* KCOVD_SIGNALS */
  int verbose;
  int record_fd;            /* KCOVD_RECORD or -1 */
  struct sockaddr_storage addr[MAX_ADDRS];
  socklen_t addrlen[MAX_ADDRS];
  int naddr;
} cfg = { .record_fd = -1 };

/* ---- per-thread slots ------------------------------------------------------ */

struct ring {
  uint64_t *mem;                 /* nbuf * batch words */
  volatile uint64_t filled;      /* buffers published (owner) */
  volatile uint64_t drained;     /* buffers done with (sender) */
  uint32_t len[MAX_RING];        /* words in each published buffer */
};

struct tls;
struct slot {
  volatile int state;            /* SLOT_* */
  long tid;                      /* as posted */
  long parent;                   /* fork: the parent's tid, or 0 */
  int main;                      /* the process's first thread */
  struct ring ring[NKINDS];
  /* owner-written counters (read by anyone) */
  volatile uint64_t seen, rt_dropped, nested;
  volatile int overflow;         /* waited KCOVD_WAIT_MS without a free buffer: dropping */
  volatile int overflow_said;
  /* sender-only */
  volatile int setup;            /* 0 not yet, 1 done, -1 failed */
  volatile int tried;            /* the sender tried to set it up at least once */
  int fd;                        /* descriptor opened (KCOVD_ENABLE), or -1 */
  int area_full_said;
  uint64_t stored_here;          /* stored since the last (re)setup */
  struct tls *owner;             /* the owner's hook state (pending records at exit) */
};

static struct slot *slots;
static volatile uint64_t g_claims;       /* threads other than main that claimed a slot (KCOVD_TID numbering) */
static volatile uint64_t g_noslot;       /* records of threads that found no slot */
static long g_pid;

/* What the hook needs, in static TLS: no allocation, no lookup. */
struct tls {
  uint64_t *buf[NKINDS];
  uint32_t pos[NKINDS], cap[NKINDS];
  volatile int busy;
  int off;                       /* never traces (the sender, a fork child, after exit) */
  int noslot;                    /* off because every slot was taken: its records count as dropped */
  struct slot *slot;
};
static __thread struct tls T __attribute__((tls_model("initial-exec")));

/* ---- global counters (sender and owners, atomically) ------------------------ */

static struct {
  volatile uint64_t sent, stored, area_dropped, ignored, rt_dropped, unconfirmed, requests, errors, restarts,
      lost_to_restart, threads, seen_retired, nested_retired, waited_us;
} G;
#define ADD(x, n) __atomic_fetch_add(&(x), (uint64_t)(n), __ATOMIC_RELAXED)
#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

/* ---- sender state ---------------------------------------------------------------- */

#define MAX_FDS 64
static struct {
  long tid[MAX_FDS];
  int fd[MAX_FDS];
  int n;
} ended;                              /* descriptors of ended threads, for the summary */
static pthread_t sender_thread;
static int sender_running;
static sem_t wake;
static volatile int exit_requested;   /* atexit / exec / crash: drain and end */
static volatile int sender_done;      /* the sender ended its threads and stopped */
static volatile uint64_t sender_gen;  /* incremented after every pass */
static pthread_key_t exit_key;
static volatile int finished;         /* process_exit ran */

static struct {
  int sock;
  char boot[80];                 /* kcovd-boot of the service we talk to, or "" */
  int down;                      /* the last attempt failed: in backoff */
  long backoff_ms;
  struct timespec retry_at;
  struct timespec last_use;
  char dialect[16];
  long max_entries;
  int kernel_known;              /* 1 known, -1 the kernel does not exist */
  int warned_errors;
  int said_down;                 /* "unreachable" said, not yet answered again */
} S = { .sock = -1 };

/* ---- small helpers ---------------------------------------------------------- */

NOINSTR static void say(const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n <= 0) return;
  if (n > (int)sizeof buf - 1) n = sizeof buf - 1;
  ssize_t w = write(2, buf, (size_t)n);
  (void)w;
}

NOINSTR static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

NOINSTR static void nap_us(long us) {
  struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* A checked number from the environment: absent gives def, a bad one a message and -1. */
NOINSTR static int env_long(const char *name, long min, long max, long def, long *out) {
  const char *v = getenv(name);
  *out = def;
  if (v == NULL || *v == '\0') return 0;
  char *end;
  errno = 0;
  long x = strtol(v, &end, 0);
  if (errno != 0 || *end != '\0' || x < min || x > max) {
    say("kcovd_rt: %s=%s is not a number in [%ld, %ld]; the runtime is off\n", name, v, min, max);
    return -1;
  }
  *out = x;
  return 0;
}

NOINSTR static int env_choice(const char *name, const char *const *choices, int def, int *out) {
  const char *v = getenv(name);
  *out = def;
  if (v == NULL || *v == '\0') return 0;
  for (int i = 0; choices[i] != NULL; i++) {
    if (strcmp(v, choices[i]) == 0) {
      *out = i;
      return 0;
    }
  }
  char list[128] = "";
  for (int i = 0; choices[i] != NULL; i++) {
    if (choices[i][0] == '\0') continue;
    strncat(list, list[0] ? ", " : "", sizeof list - strlen(list) - 1);
    strncat(list, choices[i], sizeof list - strlen(list) - 1);
  }
  say("kcovd_rt: %s=%s is not one of %s; the runtime is off\n", name, v, list);
  return -1;
}

/* KCOVD_URL: http://host[:port][/], http://[v6]:port, unix:/path. Resolved here, once. */
NOINSTR static int parse_url(const char *url) {
  if (strncmp(url, "unix:", 5) == 0) {
    const char *p = url + 5;
    if (strncmp(p, "//", 2) == 0) p += 2;
    struct sockaddr_un *un = (struct sockaddr_un *)&cfg.addr[0];
    if (*p != '/' || strlen(p) >= sizeof un->sun_path) {
      say("kcovd_rt: KCOVD_URL=%s: a Unix socket is unix:/absolute/path (at most %zu bytes)\n", url, sizeof un->sun_path - 1);
      return -1;
    }
    un->sun_family = AF_UNIX;
    strcpy(un->sun_path, p);
    cfg.addrlen[0] = (socklen_t)sizeof *un;
    cfg.naddr = 1;
    snprintf(cfg.hosthdr, sizeof cfg.hosthdr, "localhost");
    return 0;
  }
  if (strncmp(url, "http://", 7) != 0) {
    say("kcovd_rt: KCOVD_URL=%s: expected http://host:port or unix:/path\n", url);
    return -1;
  }
  const char *h = url + 7, *hend, *rest;
  char host[256], port[16] = "80";
  if (*h == '[') {
    hend = strchr(h, ']');
    if (hend == NULL) goto bad;
    if ((size_t)(hend - h - 1) >= sizeof host || hend == h + 1) goto bad;
    memcpy(host, h + 1, (size_t)(hend - h - 1));
    host[hend - h - 1] = '\0';
    rest = hend + 1;
  } else {
    size_t n = strcspn(h, ":/");
    if (n == 0 || n >= sizeof host) goto bad;
    memcpy(host, h, n);
    host[n] = '\0';
    rest = h + n;
  }
  if (*rest == ':') {
    size_t n = strcspn(rest + 1, "/");
    if (n == 0 || n >= sizeof port) goto bad;
    memcpy(port, rest + 1, n);
    port[n] = '\0';
    char *e;
    long pn = strtol(port, &e, 10);
    if (*e != '\0' || pn < 1 || pn > 65535) goto bad;
    rest += 1 + n;
  }
  if (*rest != '\0' && strcmp(rest, "/") != 0) goto bad;
  snprintf(cfg.hosthdr, sizeof cfg.hosthdr, *h == '[' ? "[%s]:%s" : "%s:%s", host, port);
  struct addrinfo hints, *res, *ai;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0) {
    say("kcovd_rt: KCOVD_URL=%s: cannot resolve %s: %s\n", url, host, gai_strerror(rc));
    return -1;
  }
  for (ai = res; ai != NULL && cfg.naddr < MAX_ADDRS; ai = ai->ai_next) {
    if (ai->ai_addrlen > sizeof cfg.addr[0]) continue;
    memcpy(&cfg.addr[cfg.naddr], ai->ai_addr, ai->ai_addrlen);
    cfg.addrlen[cfg.naddr++] = ai->ai_addrlen;
  }
  freeaddrinfo(res);
  return cfg.naddr > 0 ? 0 : -1;
bad:
  say("kcovd_rt: KCOVD_URL=%s: expected http://host:port, http://[v6addr]:port or unix:/path\n", url);
  return -1;
}

NOINSTR static int load_config(void) {
  const char *url = getenv("KCOVD_URL");
  if (url == NULL || *url == '\0') url = "http://127.0.0.1:5268";
  if (parse_url(url) != 0) return -1;
  const char *k = getenv("KCOVD_KERNEL");
  if (k == NULL || *k == '\0') k = "default";
  if (strlen(k) >= sizeof cfg.kernel || strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != strlen(k)) {
    say("kcovd_rt: KCOVD_KERNEL=%s is not a kernel name\n", k);
    return -1;
  }
  strcpy(cfg.kernel, k);
  const char *tok = getenv("KCOV_TOKEN");
  if (tok != NULL && *tok != '\0') {
    if (strlen(tok) > 512 || strpbrk(tok, "\r\n") != NULL) {
      say("kcovd_rt: KCOV_TOKEN is not a usable token\n");
      return -1;
    }
    snprintf(cfg.auth, sizeof cfg.auth, "Authorization: Bearer %s\r\n", tok);
  }
  static const char *const enables[] = { "", "pc", "cmp", NULL };
  int en;
  if (env_choice("KCOVD_ENABLE", enables, 0, &en) != 0) return -1;
  strcpy(cfg.enable, enables[en]);
  cfg.want[K_PC] = en != 2;
  cfg.want[K_CMP] = en != 1;
  static const char *const forks[] = { "off", "trace", NULL };
  static const char *const bools[] = { "0", "1", NULL };
  long v;
  if (env_long("KCOVD_WORDS", 2, INT_MAX / 8, 0, &cfg.words) != 0) return -1;
  if (env_long("KCOVD_TID", 1, INT_MAX / 2, 0, &cfg.tid) != 0) return -1;
  if (env_long("KCOVD_BATCH", 64, 1L << 23, 1L << 18, &cfg.batch) != 0) return -1;
  cfg.batch &= ~3L; /* whole CMP records */
  if (env_long("KCOVD_BUFFERS", 2, MAX_RING, 4, &v) != 0) return -1;
  cfg.nbuf = (int)v;
  if (env_long("KCOVD_THREADS", 1, 65536, 256, &v) != 0) return -1;
  cfg.nslots = (int)v;
  if (env_long("KCOVD_WAIT_MS", 0, 3600000, 2000, &cfg.wait_ms) != 0) return -1;
  if (env_long("KCOVD_TIMEOUT_MS", 1, 3600000, 5000, &cfg.timeout_ms) != 0) return -1;
  if (env_long("KCOVD_EXIT_MS", 0, 3600000, 10000, &cfg.exit_ms) != 0) return -1;
  if (env_choice("KCOVD_FORK", forks, 0, &cfg.fork_trace) != 0) return -1;
  if (env_choice("KCOVD_CLOSE", bools, 0, &cfg.close_at_exit) != 0) return -1;
  if (env_choice("KCOVD_SIGNALS", bools, 1, &cfg.signals) != 0) return -1;
  if (env_choice("KCOVD_VERBOSE", bools, 0, &cfg.verbose) != 0) return -1;
  const char *rec = getenv("KCOVD_RECORD");
  if (rec != NULL && *rec != '\0') {
    cfg.record_fd = open(rec, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (cfg.record_fd < 0) {
      say("kcovd_rt: KCOVD_RECORD=%s: %s\n", rec, strerror(errno));
      return -1;
    }
  }
  return 0;
}

/* ---- buffers ---------------------------------------------------------------------- */

/* Reserve every slot's rings now: a thread's first hook then allocates nothing. */
NOINSTR static int reserve_slots(void) {
  size_t per = (size_t)cfg.nbuf * (size_t)cfg.batch * 8;
  size_t kinds = (size_t)(cfg.want[K_PC] + cfg.want[K_CMP]);
  size_t total = sizeof(struct slot) * (size_t)cfg.nslots;
  total = (total + 4095) & ~(size_t)4095;
  void *meta = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (meta == MAP_FAILED) return -1;
  slots = meta;
  char *mem = mmap(NULL, per * kinds * (size_t)cfg.nslots, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) {
    say("kcovd_rt: cannot reserve %zu MiB for %d threads x %d buffers x %ld words; lower KCOVD_THREADS, KCOVD_BUFFERS or KCOVD_BATCH\n",
        per * kinds * (size_t)cfg.nslots >> 20, cfg.nslots, cfg.nbuf, cfg.batch);
    return -1;
  }
  for (int i = 0; i < cfg.nslots; i++) {
    for (int k = 0; k < NKINDS; k++) {
      if (!cfg.want[k]) continue;
      slots[i].ring[k].mem = (uint64_t *)mem;
      mem += per;
    }
    slots[i].fd = -1;
  }
  return 0;
}

NOINSTR static void slot_reset(struct slot *s) {
  for (int k = 0; k < NKINDS; k++) {
    s->ring[k].filled = 0;
    s->ring[k].drained = 0;
  }
  s->seen = s->rt_dropped = s->nested = 0;
  s->overflow = s->overflow_said = 0;
  s->setup = 0;
  s->tried = 0;
  s->fd = -1;
  s->area_full_said = 0;
  s->stored_here = 0;
  s->parent = 0;
  s->main = 0;
}

/* The next buffer of kind k, if one is free. */
NOINSTR static int take_buffer(struct tls *t, int k) {
  struct ring *r = &t->slot->ring[k];
  uint64_t f = r->filled;
  if (f - LOAD(r->drained) >= (uint64_t)cfg.nbuf) return 0;
  t->buf[k] = r->mem + (size_t)(f % (uint64_t)cfg.nbuf) * (size_t)cfg.batch;
  t->pos[k] = 0;
  t->cap[k] = (uint32_t)cfg.batch;
  return 1;
}

/* Hand the current buffer of kind k to the sender (when it holds anything). */
NOINSTR static void publish(struct tls *t, int k) {
  if (t->buf[k] == NULL) return;
  struct ring *r = &t->slot->ring[k];
  uint32_t n = t->pos[k];
  if (n == 0) {
    t->cap[k] = (uint32_t)cfg.batch; /* nothing to hand over: the thread keeps its buffer */
    return;
  }
  t->cap[k] = 0;
  r->len[r->filled % (uint64_t)cfg.nbuf] = n;
  t->slot->seen += n / (k == K_PC ? 1 : 4);
  STORE(r->filled, r->filled + 1);
  t->buf[k] = NULL;
  t->pos[k] = 0;
  sem_post(&wake);
}

/* Free buffer or drop: the documented policy when the service is slower than the program. */
NOINSTR static int next_buffer(struct tls *t, int k, int may_wait) {
  if (take_buffer(t, k)) {
    t->slot->overflow = 0;
    return 1;
  }
  if (!may_wait || t->slot->overflow || cfg.wait_ms == 0 || exit_requested) {
    t->slot->overflow = 1;
    return 0;
  }
  long t0 = now_ms(), until = t0 + cfg.wait_ms;
  int got = 0;
  do {
    nap_us(100);
    got = take_buffer(t, k);
  } while (!got && now_ms() < until && !exit_requested);
  ADD(G.waited_us, (uint64_t)(now_ms() - t0) * 1000 + 100);
  if (got) return 1;
  t->slot->overflow = 1;
  return 0;
}

NOINSTR static struct slot *claim_slot(long tid, int main, long parent) {
  for (int i = 0; i < cfg.nslots; i++) {
    if (slots[i].state != SLOT_FREE) continue;
    if (!__atomic_compare_exchange_n(&slots[i].state, &(int){ SLOT_FREE }, SLOT_CLAIMING, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) continue;
    /* CLAIMING: the sender leaves it alone until every field is the new thread's */
    struct slot *s = &slots[i];
    slot_reset(s);
    s->tid = tid;
    s->main = main;
    s->parent = parent;
    STORE(s->state, SLOT_ACTIVE);
    ADD(G.threads, 1);
    sem_post(&wake); /* the sender opens its descriptor now, not at the first batch */
    return s;
  }
  return NULL;
}

/* A thread's first record: a slot (no allocation: they were reserved), a tid, an exit hook. */
NOINSTR static int first_record(struct tls *t) {
  if (!cfg.ok || finished || slots == NULL) {
    t->off = 1;
    return 0;
  }
  long real = (long)syscall(SYS_gettid);
  int main = real == g_pid;
  /* KCOVD_TID=N: the main thread is N, the others N+1, N+2, ... in the order of their first record */
  long tid = cfg.tid == 0 ? real : main ? cfg.tid : cfg.tid + (long)ADD(g_claims, 1) + 1;
  struct slot *s = claim_slot(tid, main, 0);
  if (s == NULL) {
    ADD(g_noslot, 1);
    t->off = 1;
    t->noslot = 1;
    return 0;
  }
  t->slot = s;
  s->owner = t;
  pthread_setspecific(exit_key, s);
  for (int k = 0; k < NKINDS; k++) {
    t->buf[k] = NULL;
    t->pos[k] = t->cap[k] = 0;
  }
  return 1;
}

/* Everything the fast path cannot do: first record, full buffer, overflow. */
NOINSTR __attribute__((noinline)) static void slow(struct tls *t, int k, const uint64_t *w, unsigned nw) {
  if (t->off || !cfg.want[k]) {
    if (t->noslot && cfg.want[k] && !finished) ADD(g_noslot, nw / (k == K_PC ? 1 : 4));
    return;
  }
  if (t->slot == NULL && !first_record(t)) return;
  struct slot *s = t->slot;
  if (t->buf[k] != NULL && t->pos[k] + nw > t->cap[k]) publish(t, k); /* full */
  if (t->buf[k] == NULL && !next_buffer(t, k, 1)) {
    s->rt_dropped += 1;
    s->seen += 1;
    return;
  }
  memcpy(t->buf[k] + t->pos[k], w, nw * 8);
  t->pos[k] += nw;
}

/* ---- the hooks ------------------------------------------------------------------ */

NOINSTR static void nested(struct tls *t, int k) {
  if (t->busy == 1 && t->slot != NULL && cfg.want[k]) ADD(t->slot->nested, 1);
}

/* Both PC hooks. The hook reads RET_IP itself: inlined here it would still be the hook's. */
NOINSTR static inline __attribute__((always_inline)) void record_pc(struct tls *t, uint64_t pc) {
  if (UNLIKELY(t->busy)) return nested(t, K_PC);
  t->busy = 1;
  BARRIER();
  uint32_t p = t->pos[K_PC];
  if (LIKELY(p < t->cap[K_PC])) {
    t->buf[K_PC][p] = pc;
    BARRIER();
    t->pos[K_PC] = p + 1;
  } else {
    slow(t, K_PC, &pc, 1);
  }
  BARRIER();
  t->busy = 0;
}

NOINSTR void __sanitizer_cov_trace_pc(void) {
  record_pc(&T, RET_IP);
}

/* clang's trace-pc-guard: every guard is non-zero, so every edge is recorded as trace-pc would. */
NOINSTR void __sanitizer_cov_trace_pc_guard_init(uint32_t *start, uint32_t *stop) {
  static uint32_t n;
  if (start == stop || *start != 0) return;
  for (uint32_t *g = start; g < stop; g++) *g = ++n;
}

NOINSTR void __sanitizer_cov_trace_pc_guard(uint32_t *guard) {
  if (UNLIKELY(*guard == 0)) return;
  record_pc(&T, RET_IP);
}

NOINSTR static inline void add_cmp(uint64_t type, uint64_t a, uint64_t b, uint64_t ip) {
  struct tls *t = &T;
  if (UNLIKELY(t->busy)) return nested(t, K_CMP);
  t->busy = 1;
  BARRIER();
  uint32_t p = t->pos[K_CMP];
  if (LIKELY(p + 4 <= t->cap[K_CMP])) {
    uint64_t *r = t->buf[K_CMP] + p;
    r[0] = type;
    r[1] = a;
    r[2] = b;
    r[3] = ip;
    BARRIER();
    t->pos[K_CMP] = p + 4;
  } else {
    uint64_t w[4] = { type, a, b, ip };
    slow(t, K_CMP, w, 4);
  }
  BARRIER();
  t->busy = 0;
}

NOINSTR void __sanitizer_cov_trace_cmp1(uint8_t a, uint8_t b) { add_cmp(KCOV_CMP_SIZE(0), a, b, RET_IP); }
NOINSTR void __sanitizer_cov_trace_cmp2(uint16_t a, uint16_t b) { add_cmp(KCOV_CMP_SIZE(1), a, b, RET_IP); }
NOINSTR void __sanitizer_cov_trace_cmp4(uint32_t a, uint32_t b) { add_cmp(KCOV_CMP_SIZE(2), a, b, RET_IP); }
NOINSTR void __sanitizer_cov_trace_cmp8(uint64_t a, uint64_t b) { add_cmp(KCOV_CMP_SIZE(3), a, b, RET_IP); }
NOINSTR void __sanitizer_cov_trace_const_cmp1(uint8_t a, uint8_t b) { add_cmp(KCOV_CMP_SIZE(0) | KCOV_CMP_CONST, a, b, RET_IP); }
NOINSTR void __sanitizer_cov_trace_const_cmp2(uint16_t a, uint16_t b) { add_cmp(KCOV_CMP_SIZE(1) | KCOV_CMP_CONST, a, b, RET_IP); }
NOINSTR void __sanitizer_cov_trace_const_cmp4(uint32_t a, uint32_t b) { add_cmp(KCOV_CMP_SIZE(2) | KCOV_CMP_CONST, a, b, RET_IP); }
NOINSTR void __sanitizer_cov_trace_const_cmp8(uint64_t a, uint64_t b) { add_cmp(KCOV_CMP_SIZE(3) | KCOV_CMP_CONST, a, b, RET_IP); }

/* As Linux kernel/kcov.c: cases[0] = count, cases[1] = size in bits, then the values; one const comparison each. */
NOINSTR void __sanitizer_cov_trace_switch(uint64_t val, uint64_t *cases) {
  uint64_t count = cases[0], type = KCOV_CMP_CONST;
  switch (cases[1]) {
    case 8: type |= KCOV_CMP_SIZE(0); break;
    case 16: type |= KCOV_CMP_SIZE(1); break;
    case 32: type |= KCOV_CMP_SIZE(2); break;
    case 64: type |= KCOV_CMP_SIZE(3); break;
    default: return;
  }
  uint64_t ip = RET_IP;
  for (uint64_t i = 0; i < count; i++) add_cmp(type, cases[i + 2], val, ip);
}

/* Floating-point comparisons have no kcov encoding (kernels never compare floats): ignored. */
NOINSTR void __sanitizer_cov_trace_cmpf(float a, float b) { (void)a; (void)b; }
NOINSTR void __sanitizer_cov_trace_cmpd(double a, double b) { (void)a; (void)b; }

/* ---- HTTP/1.1 over one kept-alive connection (sender thread only) --------------- */

NOINSTR static void conn_close(void) {
  if (S.sock >= 0) close(S.sock);
  S.sock = -1;
}

NOINSTR static int conn_open(void) {
  for (int i = 0; i < cfg.naddr; i++) {
    int fam = cfg.addr[i].ss_family;
    int s = socket(fam, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0) continue;
    int rc = connect(s, (struct sockaddr *)&cfg.addr[i], cfg.addrlen[i]);
    if (rc != 0 && (errno == EINPROGRESS || errno == EAGAIN)) {
      struct pollfd p = { s, POLLOUT, 0 };
      int err = 0;
      socklen_t el = sizeof err;
      if (poll(&p, 1, (int)cfg.timeout_ms) == 1 && getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0) rc = 0;
    }
    if (rc != 0) {
      close(s);
      continue;
    }
    int fl = fcntl(s, F_GETFL);
    fcntl(s, F_SETFL, fl & ~O_NONBLOCK);
    struct timeval tv = { cfg.timeout_ms / 1000, (cfg.timeout_ms % 1000) * 1000 };
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (fam != AF_UNIX) {
      int one = 1;
      setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    int big = 4 << 20;
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    S.sock = s;
    return 0;
  }
  return -1;
}

struct reply {
  int status;         /* HTTP status, or < 0 */
  int sent_all;       /* the whole request went out */
  char boot[80];
  char body[2048];
};

enum { R_CONNECT = -1, R_IO = -2, R_TIMEOUT = -3 };

/* One request on the current connection; header and body in one writev. */
NOINSTR static void http_once(const char *method, const char *path, const char *type, const void *body, size_t len, struct reply *out) {
  memset(out, 0, sizeof *out);
  out->status = R_IO;
  char head[1400];
  char ctype[96] = "";
  if (type != NULL) snprintf(ctype, sizeof ctype, "Content-Type: %s\r\nContent-Length: %zu\r\n", type, len);
  int hn = snprintf(head, sizeof head,
                    "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: kcovd_rt\r\nAccept: application/json\r\n%s%s%s%s%s\r\n",
                    method, path, cfg.hosthdr, cfg.auth, S.boot[0] ? "if-kcovd-boot: " : "", S.boot, S.boot[0] ? "\r\n" : "",
                    ctype);
  if (hn <= 0 || hn >= (int)sizeof head) return;
  struct iovec iov[2] = { { head, (size_t)hn }, { (void *)body, len } };
  int niov = len > 0 ? 2 : 1;
  size_t left = (size_t)hn + len;
  while (left > 0) {
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = iov;
    m.msg_iovlen = (size_t)niov;
    ssize_t w = sendmsg(S.sock, &m, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      out->status = (errno == EAGAIN || errno == EWOULDBLOCK) ? R_TIMEOUT : R_IO;
      return;
    }
    left -= (size_t)w;
    size_t ww = (size_t)w;
    for (int i = 0; i < niov && ww > 0; i++) {
      size_t c = ww < iov[i].iov_len ? ww : iov[i].iov_len;
      iov[i].iov_base = (char *)iov[i].iov_base + c;
      iov[i].iov_len -= c;
      ww -= c;
    }
  }
  out->sent_all = 1;
  char buf[8192];
  size_t have = 0;
  char *eoh = NULL;
  while (eoh == NULL) {
    if (have == sizeof buf - 1) return;
    ssize_t r = recv(S.sock, buf + have, sizeof buf - 1 - have, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      out->status = R_TIMEOUT;
      return;
    }
    if (r <= 0) return;
    have += (size_t)r;
    buf[have] = '\0';
    eoh = strstr(buf, "\r\n\r\n");
  }
  int status = 0;
  if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) return;
  size_t clen = 0;
  int close_after = 0;
  for (char *line = strstr(buf, "\r\n") + 2; line < eoh; line = strstr(line, "\r\n") + 2) {
    char *eol = strstr(line, "\r\n");
    if (strncasecmp(line, "content-length:", 15) == 0) clen = strtoul(line + 15, NULL, 10);
    else if (strncasecmp(line, "connection:", 11) == 0) {
      char *c = strcasestr(line, "close");
      if (c != NULL && c < eol) close_after = 1;
    } else if (strncasecmp(line, "kcovd-boot:", 11) == 0) {
      char *v = line + 11;
      while (*v == ' ') v++;
      size_t n = (size_t)(eol - v);
      if (n >= sizeof out->boot) n = sizeof out->boot - 1;
      memcpy(out->boot, v, n);
      out->boot[n] = '\0';
    }
  }
  char *b = eoh + 4;
  size_t got = have - (size_t)(b - buf);
  size_t keep = got < sizeof out->body - 1 ? got : sizeof out->body - 1;
  memcpy(out->body, b, keep);
  while (got < clen) {
    char tmp[2048];
    ssize_t r = recv(S.sock, tmp, clen - got < sizeof tmp ? clen - got : sizeof tmp, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      out->status = R_TIMEOUT;
      return;
    }
    if (r <= 0) return;
    if (keep < sizeof out->body - 1) {
      size_t c = (size_t)r < sizeof out->body - 1 - keep ? (size_t)r : sizeof out->body - 1 - keep;
      memcpy(out->body + keep, tmp, c);
      keep += c;
    }
    got += (size_t)r;
  }
  out->body[keep] = '\0';
  out->status = status;
  if (close_after) conn_close();
  clock_gettime(CLOCK_MONOTONIC, &S.last_use);
}

NOINSTR static void backoff(const char *why) {
  conn_close();
  ADD(G.errors, 1);
  if (!S.said_down) {
    S.said_down = 1;
    say("kcovd_rt: %s: %s; records are dropped and counted until it answers (retrying with backoff)\n", cfg.hosthdr, why);
  }
  S.down = 1;
  S.backoff_ms = S.backoff_ms == 0 ? 50 : S.backoff_ms * 2 > 2000 ? 2000 : S.backoff_ms * 2;
  clock_gettime(CLOCK_MONOTONIC, &S.retry_at);
  S.retry_at.tv_sec += S.backoff_ms / 1000;
  S.retry_at.tv_nsec += (S.backoff_ms % 1000) * 1000000;
  if (S.retry_at.tv_nsec >= 1000000000) {
    S.retry_at.tv_sec++;
    S.retry_at.tv_nsec -= 1000000000;
  }
}

NOINSTR static int in_backoff(void) {
  if (!S.down) return 0;
  struct timespec n;
  clock_gettime(CLOCK_MONOTONIC, &n);
  return n.tv_sec < S.retry_at.tv_sec || (n.tv_sec == S.retry_at.tv_sec && n.tv_nsec < S.retry_at.tv_nsec);
}

NOINSTR static void on_restart(const char *newboot);
NOINSTR static void end_running(void);

/*
 * A request with the runtime's policy: while the service is unreachable (in
 * backoff) nothing is tried; a kept-alive connection the server closed while
 * idle gets one retry on a fresh one (nothing of the request was answered).
 */
NOINSTR static void http(const char *method, const char *path, const char *type, const void *body, size_t len, struct reply *out) {
  memset(out, 0, sizeof *out);
  out->status = R_CONNECT;
  if (in_backoff()) return;
  for (int attempt = 0; attempt < 3; attempt++) {
    int fresh = 0;
    if (S.sock >= 0) {
      struct timespec n;
      clock_gettime(CLOCK_MONOTONIC, &n);
      if (n.tv_sec - S.last_use.tv_sec > 20) conn_close(); /* well inside the server's keep-alive timeout */
    }
    if (S.sock < 0) {
      if (conn_open() != 0) {
        out->status = R_CONNECT;
        backoff("service unreachable");
        return;
      }
      fresh = 1;
    }
    http_once(method, path, type, body, len, out);
    if (out->status > 0) {
      if (S.said_down) say("kcovd_rt: %s answers again\n", cfg.hosthdr);
      S.said_down = 0;
      S.down = 0;
      S.backoff_ms = 0;
      if (out->boot[0] != '\0' && S.boot[0] == '\0') snprintf(S.boot, sizeof S.boot, "%s", out->boot);
      if (out->status == 412 && strstr(out->body, "ESTALE") != NULL) {
        on_restart(out->boot); /* the request changed nothing; the caller decides what to send again */
        return;
      }
      if (out->status == 503 && attempt < 2) {
        nap_us(100000);
        continue;
      }
      return;
    }
    if (out->status == R_TIMEOUT) {
      backoff("no reply within KCOVD_TIMEOUT_MS");
      return;
    }
    conn_close();
    if (fresh) {
      backoff("connection failed");
      return;
    }
    /* a reused connection that failed: the server closed it while idle; once more */
  }
}

NOINSTR static int json_call(const char *method, const char *path, const char *json, struct reply *out) {
  http(method, path, "application/json", json, strlen(json), out);
  if (out->status == 412) http(method, path, "application/json", json, strlen(json), out);
  return out->status;
}

NOINSTR static void say_http(const char *what, long tid, const struct reply *r) {
  const char *why = r->status == R_CONNECT ? "service unreachable" : r->status == R_TIMEOUT ? "no reply within KCOVD_TIMEOUT_MS" : r->status < 0 ? "connection failed" : r->body;
  if (r->status > 0) say("kcovd_rt: tid %ld: %s: HTTP %d %s\n", tid, what, r->status, why);
  else say("kcovd_rt: tid %ld: %s: %s\n", tid, what, why);
}

/* The kernel's dialect decides the ioctl names and the largest area. */
NOINSTR static int learn_kernel(void) {
  if (S.kernel_known != 0) return S.kernel_known;
  char path[256];
  struct reply r;
  snprintf(path, sizeof path, "/v1/kernels/%s", cfg.kernel);
  http("GET", path, NULL, NULL, 0, &r);
  if (r.status == 412) http("GET", path, NULL, NULL, 0, &r);
  if (r.status == 200) {
    const char *d = strstr(r.body, "\"dialect\":\"");
    if (d != NULL) sscanf(d + 11, "%15[a-z]", S.dialect);
    const char *m = strstr(r.body, "\"max_entries\":");
    S.max_entries = m != NULL ? strtol(m + 14, NULL, 10) : 0;
    S.kernel_known = 1;
  } else if (r.status == 404) {
    say("kcovd_rt: kernel \"%s\" does not exist in the service (KCOVD_KERNEL); nothing will be stored\n", cfg.kernel);
    S.kernel_known = -1;
  }
  return S.kernel_known;
}

/* KCOVD_ENABLE: open a descriptor, size it and enable it for the slot's tid, as a kcov user does. */
NOINSTR static void setup(struct slot *s) {
  char path[512], body[256];
  struct reply r;
  if (s->setup != 0) return;
  if (!s->main || s->parent != 0) {
    /* another thread of this process (or a fork child): the service learns its process first */
    long pid = cfg.tid != 0 && s->parent == 0 ? cfg.tid : g_pid;
    snprintf(path, sizeof path, "/v1/kernels/%s/threads/%ld", cfg.kernel, s->tid);
    if (s->parent != 0) snprintf(body, sizeof body, "{\"pid\":%ld,\"parent\":%ld}", pid, s->parent);
    else snprintf(body, sizeof body, "{\"pid\":%ld}", pid);
    int st = json_call("PUT", path, body, &r);
    if (st == R_CONNECT || st == R_TIMEOUT) return; /* again on the next pass */
    if (st != 200 && st != 201) say_http("PUT thread", s->tid, &r);
  }
  if (cfg.enable[0] == '\0') {
    s->setup = 1;
    return;
  }
  if (learn_kernel() <= 0) {
    if (S.kernel_known < 0) s->setup = -1;
    return;
  }
  int is_linux = strcmp(S.dialect, "linux") == 0, is_netbsd = strcmp(S.dialect, "netbsd") == 0;
  const char *init = is_linux ? "KCOV_INIT_TRACE" : is_netbsd ? "KCOV_IOC_SETBUFSIZE" : "KIOSETBUFSIZE";
  const char *enable = is_linux ? "KCOV_ENABLE" : is_netbsd ? "KCOV_IOC_ENABLE" : "KIOENABLE";
  long words = cfg.words;
  if (words == 0) {
    words = 1L << 21;
    if (S.max_entries > 0 && words > S.max_entries) words = S.max_entries;
  }
  snprintf(path, sizeof path, "/v1/kernels/%s/descriptors", cfg.kernel);
  snprintf(body, sizeof body, "{\"tid\":%ld}", s->tid);
  int st = json_call("POST", path, body, &r);
  if (st == R_CONNECT || st == R_TIMEOUT) return;
  const char *f = strstr(r.body, "\"fd\":");
  if (st != 201 || f == NULL) {
    say_http("open", s->tid, &r);
    s->setup = -1;
    return;
  }
  s->fd = atoi(f + 5);
  snprintf(path, sizeof path, "/v1/kernels/%s/descriptors/%d/ioctl/%s", cfg.kernel, s->fd, init);
  snprintf(body, sizeof body, "{\"tid\":%ld,\"arg\":%ld}", s->tid, words);
  if ((st = json_call("POST", path, body, &r)) != 200) {
    say_http(init, s->tid, &r);
    s->setup = -1;
    return;
  }
  snprintf(path, sizeof path, "/v1/kernels/%s/descriptors/%d/ioctl/%s", cfg.kernel, s->fd, enable);
  snprintf(body, sizeof body, "{\"tid\":%ld,\"arg\":\"%s\"}", s->tid, cfg.enable);
  if ((st = json_call("POST", path, body, &r)) != 200) {
    say_http(enable, s->tid, &r);
    s->setup = -1;
    return;
  }
  s->setup = 1;
  s->stored_here = 0;
}

NOINSTR static void on_restart(const char *newboot) {
  ADD(G.restarts, 1);
  uint64_t gone = 0;
  for (int i = 0; i < cfg.nslots; i++) {
    if (slots[i].state == SLOT_FREE && slots[i].stored_here == 0) continue;
    gone += slots[i].stored_here;
    slots[i].stored_here = 0;
    if (slots[i].setup == 1 && cfg.enable[0] != '\0') {
      slots[i].setup = 0; /* its descriptor is gone with the old service: open a new one */
      slots[i].fd = -1;
    } else if (slots[i].setup == 1) {
      slots[i].setup = 0;
    }
  }
  ADD(G.lost_to_restart, gone);
  say("kcovd_rt: the service restarted (kcovd-boot %s, now %s): the %llu records stored before are gone with it;%s\n",
      S.boot, newboot[0] ? newboot : "?", (unsigned long long)gone,
      cfg.enable[0] ? " opening new descriptors" : " whoever enabled descriptors must enable them again");
  snprintf(S.boot, sizeof S.boot, "%s", newboot);
  S.kernel_known = 0;
  learn_kernel();
}

/* KCOVD_RECORD: the records just sent, one a line, in one write. */
NOINSTR static void record(struct slot *s, int k, const uint64_t *w, size_t nw) {
  if (cfg.record_fd < 0 || nw == 0) return;
  size_t stride = k == K_PC ? 1 : 4, n = nw / stride;
  size_t cap = n * (stride * 19 + 32);
  char *buf = malloc(cap);
  if (buf == NULL) return;
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    at += (size_t)snprintf(buf + at, cap - at, "%s %ld", k == K_PC ? "pc" : "cmp", s->tid);
    for (size_t j = 0; j < stride; j++) at += (size_t)snprintf(buf + at, cap - at, " 0x%llx", (unsigned long long)w[i * stride + j]);
    buf[at++] = '\n';
  }
  ssize_t wr = write(cfg.record_fd, buf, at);
  (void)wr;
  free(buf);
}

NOINSTR static uint64_t json_num(const char *body, const char *key) {
  const char *p = strstr(body, key);
  if (p == NULL) return 0;
  p += strlen(key);
  return strtoull(p, NULL, 10);
}

NOINSTR static void count_error(struct slot *s, const char *what, const struct reply *r) {
  if (r->status < 0) return; /* counted and said when the connection failed */
  ADD(G.errors, 1);
  if (S.warned_errors++ < 3) say_http(what, s->tid, r);
  else if (S.warned_errors == 4) say("kcovd_rt: more failed requests; the summary at exit counts them\n");
}

/* One published buffer: posted, or dropped and counted. */
NOINSTR static void send_batch(struct slot *s, int k, const uint64_t *w, size_t nw) {
  uint64_t n = nw / (k == K_PC ? 1 : 4);
  if (s->setup == 0) setup(s);
  if (in_backoff() || s->setup < 0) {
    /* unreachable (in backoff) or no descriptor: the program must not wait for it */
    ADD(G.rt_dropped, n);
    if (s->setup < 0) ADD(G.errors, 1);
    return;
  }
  char path[300];
  struct reply r;
  snprintf(path, sizeof path, "/v1/kernels/%s/threads/%ld/events?kind=%s", cfg.kernel, s->tid, k == K_PC ? "pc" : "cmp");
  http("POST", path, "application/octet-stream", w, nw * 8, &r);
  if (r.status == 412) {
    /* a new service: this batch was not stored; the thread gets a new descriptor, then the batch again */
    if (s->setup == 0) setup(s);
    if (s->setup == 1) http("POST", path, "application/octet-stream", w, nw * 8, &r);
  }
  if (r.status == 200) {
    ADD(G.requests, 1);
    ADD(G.sent, n);
    uint64_t acc = json_num(r.body, "\"accepted\":"), drop = json_num(r.body, "\"dropped\":"), ign = json_num(r.body, "\"ignored\":");
    ADD(G.stored, acc);
    ADD(G.area_dropped, drop);
    ADD(G.ignored, ign);
    s->stored_here += acc;
    if (drop > 0 && !s->area_full_said) {
      s->area_full_said = 1;
      say("kcovd_rt: tid %ld: the area%s%.0d is full: %llu records of this batch dropped by the service (as the kernel drops them); "
          "raise KCOVD_WORDS or read and reset the area more often\n",
          s->tid, s->fd >= 0 ? " of fd " : "", s->fd >= 0 ? s->fd : 0, (unsigned long long)drop);
    }
    record(s, k, w, nw);
    return;
  }
  if (r.status == R_TIMEOUT && r.sent_all) ADD(G.unconfirmed, n);
  else ADD(G.rt_dropped, n);
  count_error(s, "POST events", &r);
}

/* End a thread in the service (the dialect's exit hook: kcov disabled, a reused tid starts clean). */
NOINSTR static void end_thread(struct slot *s) {
  char path[300];
  struct reply r;
  if (s->setup == 1 && !in_backoff()) {
    snprintf(path, sizeof path, "/v1/kernels/%s/threads/%ld", cfg.kernel, s->tid);
    http("DELETE", path, NULL, NULL, 0, &r);
    if (cfg.close_at_exit && s->fd >= 0) {
      snprintf(path, sizeof path, "/v1/kernels/%s/descriptors/%d", cfg.kernel, s->fd);
      http("DELETE", path, NULL, NULL, 0, &r);
      if (r.status == 204 || r.status == 200) s->fd = -1;
    }
  }
  if (s->fd >= 0 && ended.n < MAX_FDS) {
    ended.tid[ended.n] = s->tid;
    ended.fd[ended.n++] = s->fd;
  }
}

/* Everything published by every slot; exiting slots end and free. */
NOINSTR static int sender_pass(void) {
  int work = 0;
  for (int i = 0; i < cfg.nslots; i++) {
    struct slot *s = &slots[i];
    int st = LOAD(s->state);
    if (st != SLOT_ACTIVE && st != SLOT_EXITING) continue;
    if (s->setup == 0) {
      setup(s);
      STORE(s->tried, 1);
    }
    for (int k = 0; k < NKINDS; k++) {
      if (!cfg.want[k]) continue;
      struct ring *r = &s->ring[k];
      while (r->drained < LOAD(r->filled)) {
        uint64_t d = r->drained;
        size_t idx = (size_t)(d % (uint64_t)cfg.nbuf);
        send_batch(s, k, r->mem + idx * (size_t)cfg.batch, r->len[idx]);
        STORE(r->drained, d + 1);
        work = 1;
      }
    }
    if (s->overflow && !s->overflow_said) {
      s->overflow_said = 1;
      say("kcovd_rt: tid %ld: no free buffer for %ld ms (the service is slower than the program): dropping records until one is free "
          "(KCOVD_BUFFERS, KCOVD_BATCH, KCOVD_WAIT_MS)\n", s->tid, cfg.wait_ms);
    }
    if (st == SLOT_EXITING) {
      end_thread(s);
      ADD(G.seen_retired, s->seen);
      ADD(G.rt_dropped, s->rt_dropped);
      ADD(G.nested_retired, s->nested);
      s->seen = s->rt_dropped = s->nested = 0;
      s->owner = NULL;
      STORE(s->state, SLOT_FREE);
      work = 1;
    }
  }
  return work;
}

NOINSTR static void *sender_main(void *arg) {
  (void)arg;
  T.off = 1;
  T.busy = 2;
  for (;;) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    sem_timedwait(&wake, &ts);
    while (sem_trywait(&wake) == 0) {
    }
    int ex = LOAD(exit_requested);
    while (sender_pass()) {
    }
    __atomic_fetch_add(&sender_gen, 1, __ATOMIC_ACQ_REL);
    if (ex) {
      /* exit_requested was set before this pass began: everything published then is done */
      end_running();
      STORE(sender_done, 1);
      return NULL;
    }
  }
}

NOINSTR static int start_sender(void) {
  sem_init(&wake, 0, 0);
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setstacksize(&a, 256 << 10);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old); /* the program's signals go to its own threads */
  int rc = pthread_create(&sender_thread, &a, sender_main, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&a);
  sender_running = rc == 0;
  return rc == 0 ? 0 : -1;
}

/* ---- flush, thread exit, process exit ------------------------------------------- */

NOINSTR static void publish_all(struct tls *t) {
  if (t->slot == NULL) return;
  for (int k = 0; k < NKINDS; k++) publish(t, k);
}

NOINSTR int kcovd_flush(void) {
  struct tls *t = &T;
  if (t->slot == NULL || t->busy) return t->slot == NULL ? 0 : -1;
  t->busy = 1;
  publish_all(t);
  struct slot *s = t->slot;
  long until = now_ms() + cfg.timeout_ms * 2;
  int rc = -1;
  sem_post(&wake);
  for (;;) {
    int done = 1;
    for (int k = 0; k < NKINDS; k++) done &= LOAD(s->ring[k].drained) == s->ring[k].filled;
    if (done) {
      rc = 0;
      break;
    }
    if (now_ms() >= until || !sender_running) break;
    nap_us(200);
  }
  t->busy = 0;
  return rc;
}

/* The descriptor of this thread: the sender opens it soon after the first record; wait for that (bounded). */
NOINSTR int kcovd_fd(void) {
  struct slot *s = T.slot;
  if (s == NULL || cfg.enable[0] == '\0') return -1;
  long until = now_ms() + cfg.timeout_ms * 2;
  while (LOAD(s->setup) == 0 && !LOAD(s->tried) && now_ms() < until && sender_running) {
    sem_post(&wake);
    nap_us(200);
  }
  return s->setup == 1 ? s->fd : -1;
}

NOINSTR long kcovd_tid(void) { return T.slot == NULL ? -1 : T.slot->tid; }

/* pthread key destructor: this thread is exiting. Its records go out, then the service ends it. */
NOINSTR static void thread_exit(void *p) {
  struct slot *s = p;
  struct tls *t = &T;
  if (t->slot != s) return;
  t->busy = 2;
  t->off = 1;
  publish_all(t);
  t->slot = NULL;
  STORE(s->state, SLOT_EXITING);
  sem_post(&wake);
  /* The tid may be reused as soon as this thread is gone: wait (bounded) until the service ended it. */
  long until = now_ms() + cfg.timeout_ms * 2;
  while (LOAD(s->state) != SLOT_FREE && now_ms() < until && sender_running && !exit_requested) nap_us(200);
}

/* Records buffered by a live thread and not yet published (read from another thread: a snapshot). */
NOINSTR static uint64_t unpublished(const struct slot *s) {
  const struct tls *o = s->owner;
  if (o == NULL || s->state != SLOT_ACTIVE) return 0;
  return (uint64_t)o->pos[K_PC] + o->pos[K_CMP] / 4;
}

NOINSTR int kcovd_stats(struct kcovd_stats *st) {
  if (st == NULL) return -1;
  memset(st, 0, sizeof *st);
  st->ok = (uint32_t)cfg.ok;
  if (!cfg.ok || slots == NULL) return 0;
  st->sent = LOAD(G.sent);
  st->stored = LOAD(G.stored);
  st->area_dropped = LOAD(G.area_dropped);
  st->ignored = LOAD(G.ignored);
  st->unconfirmed = LOAD(G.unconfirmed);
  st->requests = LOAD(G.requests);
  st->errors = LOAD(G.errors);
  st->restarts = LOAD(G.restarts);
  st->lost_to_restart = LOAD(G.lost_to_restart);
  st->threads = (uint32_t)LOAD(G.threads);
  st->waited_ms = LOAD(G.waited_us) / 1000;
  uint64_t seen = LOAD(g_noslot) + LOAD(G.seen_retired), dropped = LOAD(G.rt_dropped) + LOAD(g_noslot);
  uint64_t nest = LOAD(G.nested_retired), live = 0;
  for (int i = 0; i < cfg.nslots; i++) {
    struct slot *s = &slots[i];
    if (s->state != SLOT_ACTIVE && s->state != SLOT_EXITING) continue;
    seen += s->seen;
    dropped += s->rt_dropped;
    nest += s->nested;
    live += unpublished(s);
  }
  st->runtime_dropped = dropped;
  st->nested_lost = nest;
  st->seen = seen + live + nest;
  uint64_t done = st->sent + st->runtime_dropped + st->unconfirmed + nest;
  st->pending = st->seen > done ? st->seen - done : 0;
  return 0;
}

/* ---- the end: exit, exec, _exit, fatal signals ------------------------------------ */

NOINSTR static void summary(uint64_t running_threads) {
  struct kcovd_stats st;
  kcovd_stats(&st);
  int loss = st.area_dropped || st.ignored || st.runtime_dropped || st.nested_lost || st.unconfirmed || st.pending || st.errors ||
             st.restarts;
  if (!cfg.verbose && !loss) return;
  char fds[64 * 24] = "";
  size_t at = 0;
  for (int i = 0; i < ended.n && at < sizeof fds - 32; i++)
    at += (size_t)snprintf(fds + at, sizeof fds - at, "%s%ld:%d", i ? " " : "", ended.tid[i], ended.fd[i]);
  say("kcovd_rt: pid %ld: %llu records seen, %llu sent, %llu stored, %llu dropped by full areas, %llu ignored by the service, "
      "%llu dropped by the runtime, %llu lost in nested hooks, %llu unconfirmed, %llu not sent%s; %llu requests, %llu errors, "
      "%llu restarts (%llu stored records lost with them); %u threads, %llu ms waiting for a free buffer%s%s%s\n",
      g_pid, (unsigned long long)st.seen, (unsigned long long)st.sent, (unsigned long long)st.stored,
      (unsigned long long)st.area_dropped, (unsigned long long)st.ignored, (unsigned long long)st.runtime_dropped,
      (unsigned long long)st.nested_lost, (unsigned long long)st.unconfirmed, (unsigned long long)st.pending,
      running_threads ? " (threads still running at exit)" : "", (unsigned long long)st.requests,
      (unsigned long long)st.errors, (unsigned long long)st.restarts, (unsigned long long)st.lost_to_restart, st.threads,
      (unsigned long long)st.waited_ms, at ? "; tid:fd " : "", fds, at && !cfg.close_at_exit ? " (left open for reading)" : "");
}

/* exit(), exec, _exit, a fatal signal: the calling thread's records out, every thread ended, the sender stopped (bounded). */
NOINSTR static void finish(int from_signal) {
  if (!cfg.ok || slots == NULL) return;
  if (__atomic_exchange_n(&finished, 1, __ATOMIC_ACQ_REL)) return;
  if (!sender_running) return;
  if (from_signal && pthread_equal(pthread_self(), sender_thread)) return;
  struct tls *t = &T;
  int was = t->busy;
  t->busy = 2;
  if (t->slot != NULL) {
    publish_all(t);
    struct slot *s = t->slot;
    t->slot = NULL;
    STORE(s->state, SLOT_EXITING);
  }
  t->off = 1;
  (void)was;
  uint64_t running = 0;
  for (int i = 0; i < cfg.nslots; i++)
    if (slots[i].state == SLOT_ACTIVE) running++;
  STORE(exit_requested, 1);
  sem_post(&wake);
  long until = now_ms() + cfg.exit_ms;
  while (!LOAD(sender_done) && now_ms() < until) nap_us(200);
  if (!LOAD(sender_done)) say("kcovd_rt: the sender did not finish within KCOVD_EXIT_MS (%ld ms)\n", cfg.exit_ms);
  summary(running);
}

NOINSTR static void process_exit(void) { finish(0); }

/* After the sender's last pass: the threads still running are ended in the service as well. */
NOINSTR static void end_running(void) {
  for (int i = 0; i < cfg.nslots; i++) {
    struct slot *s = &slots[i];
    if (s->state == SLOT_FREE) continue;
    if (s->state == SLOT_ACTIVE) end_thread(s);
  }
}

typedef int (*execve_fn)(const char *, char *const[], char *const[]);
typedef int (*execvpe_fn)(const char *, char *const[], char *const[]);
typedef int (*execvp_fn)(const char *, char *const[]);

/* A vfork child shares our memory: it must not touch the runtime's state. */
NOINSTR static int own_process(void) { return getpid() == g_pid; }

NOINSTR static void before_exec(void) {
  if (!own_process()) return;
  finish(0);
}

NOINSTR int execve(const char *path, char *const argv[], char *const envp[]) {
  before_exec();
  execve_fn real = (execve_fn)dlsym(RTLD_NEXT, "execve");
  if (real == NULL) return (int)syscall(SYS_execve, path, argv, envp);
  return real(path, argv, envp);
}

NOINSTR int execv(const char *path, char *const argv[]) {
  before_exec();
  execve_fn real = (execve_fn)dlsym(RTLD_NEXT, "execve");
  extern char **environ;
  return real != NULL ? real(path, argv, environ) : (int)syscall(SYS_execve, path, argv, environ);
}

NOINSTR int execvp(const char *file, char *const argv[]) {
  before_exec();
  execvp_fn real = (execvp_fn)dlsym(RTLD_NEXT, "execvp");
  if (real == NULL) {
    errno = ENOSYS;
    return -1;
  }
  return real(file, argv);
}

NOINSTR int execvpe(const char *file, char *const argv[], char *const envp[]) {
  before_exec();
  execvpe_fn real = (execvpe_fn)dlsym(RTLD_NEXT, "execvpe");
  if (real == NULL) {
    errno = ENOSYS;
    return -1;
  }
  return real(file, argv, envp);
}

/* _exit skips atexit: the tail would be lost. */
NOINSTR void _exit(int status) {
  if (own_process()) finish(0);
  for (;;) syscall(SYS_exit_group, status);
}

NOINSTR void _Exit(int status) { _exit(status); }

static const int fatal_signals[] = { SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS, SIGTERM, SIGINT, SIGQUIT, SIGHUP, 0 };
static struct sigaction previous[65];

NOINSTR static void on_fatal(int sig, siginfo_t *info, void *uc) {
  int saved = errno;
  if (own_process()) finish(1);
  /* chain: the handler that was there, or the default action once we return */
  struct sigaction *old = &previous[sig];
  sigaction(sig, old, NULL);
  if (old->sa_flags & SA_SIGINFO) {
    if (old->sa_sigaction != NULL) old->sa_sigaction(sig, info, uc);
  } else if (old->sa_handler == SIG_IGN) {
  } else if (old->sa_handler == SIG_DFL) {
    raise(sig); /* blocked until we return, then the default action */
  } else {
    old->sa_handler(sig);
  }
  errno = saved;
}

NOINSTR static void install_signals(void) {
  for (int i = 0; fatal_signals[i] != 0; i++) {
    int sig = fatal_signals[i];
    struct sigaction sa;
    if (sigaction(sig, NULL, &previous[sig]) != 0) continue;
    if (!(previous[sig].sa_flags & SA_SIGINFO) && previous[sig].sa_handler == SIG_IGN) continue;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fatal;
    sa.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
  }
}

/* fork: the child starts with nothing of the parent's (as on Linux, a child has no kcov). */
NOINSTR static void atfork_child(void) {
  long parent_tid = T.slot != NULL ? T.slot->tid : (cfg.tid != 0 ? cfg.tid : g_pid);
  g_pid = (long)syscall(SYS_getpid);
  if (S.sock >= 0) close(S.sock); /* the parent's connection: its replies are not ours */
  char boot[sizeof S.boot];
  memcpy(boot, S.boot, sizeof boot);
  memset(&S, 0, sizeof S);
  S.sock = -1;
  memcpy(S.boot, boot, sizeof boot);
  memset((void *)&G, 0, sizeof G);
  g_claims = 0;
  g_noslot = 0;
  ended.n = 0;
  for (int i = 0; i < cfg.nslots; i++) {
    slot_reset(&slots[i]);
    slots[i].owner = NULL;
    slots[i].state = SLOT_FREE;
  }
  memset(&T, 0, sizeof T);
  exit_requested = 0;
  sender_done = 0;
  sender_gen = 0;
  sender_running = 0;
  finished = 0;
  cfg.tid = 0; /* the child posts as itself */
  if (!cfg.fork_trace) {
    T.off = 1;
    cfg.ok = 0; /* nothing in this process traces, its threads neither */
    return;
  }
  if (start_sender() != 0) {
    cfg.ok = 0;
    T.off = 1;
    return;
  }
  struct slot *s = claim_slot(g_pid, 1, parent_tid);
  if (s == NULL) {
    T.off = 1;
    return;
  }
  T.slot = s;
  s->owner = &T;
  pthread_setspecific(exit_key, s);
}

__attribute__((constructor(101))) NOINSTR static void kcovd_init(void) {
  g_pid = (long)getpid();
  T.busy = 2;
  if (load_config() != 0 || reserve_slots() != 0 || pthread_key_create(&exit_key, thread_exit) != 0 || start_sender() != 0) {
    T.busy = 0;
    T.off = 1;
    return;
  }
  pthread_atfork(NULL, NULL, atfork_child);
  atexit(process_exit);
  if (cfg.signals) install_signals();
  cfg.ok = 1;
  T.busy = 0;
}

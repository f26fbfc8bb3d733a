/*
 * kcovd_rt.c: coverage runtime posting -fsanitize-coverage records to kcovd.
 * See kcovd_rt.h for the settings. This file must not be instrumented itself
 * (the Makefile compiles it without -fsanitize-coverage; every function is
 * also marked no_sanitize_coverage where the compiler knows the attribute):
 * a hook that called an instrumented function would recurse.
 *
 * Record layout is the kernel's (Linux kernel/kcov.c): a PC is one 64-bit
 * word; a comparison is four, type (KCOV_CMP_SIZE(n) | KCOV_CMP_CONST), arg1,
 * arg2, pc. Words are little-endian on the wire, as on x86-64 and arm64.
 */
#define _GNU_SOURCE
#include "kcovd_rt.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#if defined(__has_attribute)
#if __has_attribute(no_sanitize_coverage)
#define NOINSTR __attribute__((no_sanitize_coverage))
#endif
#endif
#ifndef NOINSTR
#define NOINSTR
#endif

#define PC_RECORDS 4096  /* records per PC batch */
#define CMP_RECORDS 1024 /* records per CMP batch */
#define KCOV_CMP_CONST 1u
#define KCOV_CMP_SIZE(n) ((uint64_t)(n) << 1)

enum { WANT_PC = 1, WANT_CMP = 2 };

static struct {
  char host[256];
  char port[16];
  char kernel[128];
  char auth[512];
  char enable[8];   /* "pc", "cmp" or "" */
  long words;
  long tid;         /* KCOVD_TID, or 0 */
  int want;         /* WANT_PC | WANT_CMP */
  int record_fd;    /* KCOVD_RECORD, or -1 */
  int verbose;
  int ok;           /* configuration usable */
  pthread_key_t key;
} cfg;

static pthread_once_t cfg_once = PTHREAD_ONCE_INIT;

struct thread_state {
  uint64_t pcs[PC_RECORDS];
  uint64_t cmps[CMP_RECORDS * 4];
  unsigned npcs, ncmps;
  long tid;
  int sock;
  int fd;        /* descriptor opened for KCOVD_ENABLE, or -1 */
  int setup;     /* 0 not yet, 1 done, -1 failed */
  int busy;      /* inside the runtime: hooks do nothing */
  int failed;    /* a post failed: stop trying */
  int registered;
  unsigned long sent_pcs, sent_cmps, requests;
};

static __thread struct thread_state *self;
static __thread int in_runtime; /* guards the allocation of self */

NOINSTR static void warn(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) {
    if (n > (int)sizeof buf - 1) n = sizeof buf - 1;
    ssize_t w = write(2, buf, (size_t)n);
    (void)w;
  }
}

NOINSTR static void thread_exit(void *p);
NOINSTR static void process_exit(void);

NOINSTR static void load_config(void) {
  const char *url = getenv("KCOVD_URL");
  if (url == NULL || *url == '\0') url = "http://127.0.0.1:5268";
  if (strncmp(url, "http://", 7) != 0) {
    warn("kcovd_rt: KCOVD_URL must be http://host:port, got %s\n", url);
    return;
  }
  const char *h = url + 7;
  const char *end = h + strcspn(h, "/");
  const char *colon = memchr(h, ':', (size_t)(end - h));
  size_t hl = (size_t)((colon != NULL ? colon : end) - h);
  if (hl == 0 || hl >= sizeof cfg.host) return;
  memcpy(cfg.host, h, hl);
  if (colon != NULL) {
    size_t pl = (size_t)(end - colon - 1);
    if (pl == 0 || pl >= sizeof cfg.port) return;
    memcpy(cfg.port, colon + 1, pl);
  } else {
    strcpy(cfg.port, "80");
  }
  const char *k = getenv("KCOVD_KERNEL");
  snprintf(cfg.kernel, sizeof cfg.kernel, "%s", k != NULL && *k != '\0' ? k : "default");
  const char *tok = getenv("KCOV_TOKEN");
  if (tok != NULL && *tok != '\0') snprintf(cfg.auth, sizeof cfg.auth, "Authorization: Bearer %s\r\n", tok);
  const char *en = getenv("KCOVD_ENABLE");
  cfg.want = WANT_PC | WANT_CMP;
  if (en != NULL && *en != '\0') {
    if (strcmp(en, "pc") == 0) cfg.want = WANT_PC;
    else if (strcmp(en, "cmp") == 0) cfg.want = WANT_CMP;
    else {
      warn("kcovd_rt: KCOVD_ENABLE must be pc or cmp\n");
      return;
    }
    snprintf(cfg.enable, sizeof cfg.enable, "%s", en);
  }
  const char *w = getenv("KCOVD_WORDS");
  cfg.words = w != NULL ? strtol(w, NULL, 0) : 65536;
  const char *t = getenv("KCOVD_TID");
  cfg.tid = t != NULL ? strtol(t, NULL, 0) : 0;
  const char *rec = getenv("KCOVD_RECORD");
  cfg.record_fd = -1;
  if (rec != NULL && *rec != '\0') {
    cfg.record_fd = open(rec, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (cfg.record_fd < 0) warn("kcovd_rt: cannot open %s: %s\n", rec, strerror(errno));
  }
  const char *v = getenv("KCOVD_VERBOSE");
  cfg.verbose = v != NULL && *v == '1';
  if (pthread_key_create(&cfg.key, thread_exit) != 0) return;
  atexit(process_exit);
  cfg.ok = 1;
}

/* This thread's state, made on first use; NULL while the runtime itself runs. */
NOINSTR static struct thread_state *state(void) {
  if (self != NULL) return self->busy ? NULL : self;
  if (in_runtime) return NULL;
  in_runtime = 1;
  pthread_once(&cfg_once, load_config);
  struct thread_state *s = NULL;
  if (cfg.ok) {
    s = calloc(1, sizeof *s);
    if (s != NULL) {
      s->sock = -1;
      s->fd = -1;
      s->tid = cfg.tid != 0 ? cfg.tid : (long)syscall(SYS_gettid);
      pthread_setspecific(cfg.key, s);
      self = s;
    }
  }
  in_runtime = 0;
  return s;
}

/* ---- HTTP/1.1 over one kept-alive socket per thread ---------------------- */

NOINSTR static int connect_server(void) {
  struct addrinfo hints, *res, *ai;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(cfg.host, cfg.port, &hints, &res) != 0) return -1;
  int s = -1;
  for (ai = res; ai != NULL; ai = ai->ai_next) {
    s = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (s < 0) continue;
    if (connect(s, ai->ai_addr, ai->ai_addrlen) == 0) break;
    close(s);
    s = -1;
  }
  freeaddrinfo(res);
  if (s >= 0) {
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return s;
}

NOINSTR static int write_all(int s, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = send(s, c, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

/*
 * One request; the status is returned (or -1 when the connection failed
 * before a reply), the body (truncated to cap - 1) NUL-terminated in out.
 */
NOINSTR static int http_once(struct thread_state *s, const char *method, const char *path, const char *type,
                             const void *body, size_t len, char *out, size_t cap) {
  if (s->sock < 0 && (s->sock = connect_server()) < 0) return -1;
  char head[1024];
  int hn = snprintf(head, sizeof head,
                    "%s %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: kcovd_rt\r\nAccept: application/json\r\n%s"
                    "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n",
                    method, path, cfg.host, cfg.port, cfg.auth, type, len);
  if (hn <= 0 || hn >= (int)sizeof head) return -1;
  if (write_all(s->sock, head, (size_t)hn) != 0 || (len > 0 && write_all(s->sock, body, len) != 0)) goto broken;

  char buf[4096];
  size_t have = 0;
  char *eoh = NULL;
  while (eoh == NULL) {
    if (have == sizeof buf - 1) goto broken;
    ssize_t r = recv(s->sock, buf + have, sizeof buf - 1 - have, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) goto broken;
    have += (size_t)r;
    buf[have] = '\0';
    eoh = strstr(buf, "\r\n\r\n");
  }
  int status = 0;
  if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) goto broken;
  size_t clen = 0;
  int close_after = 0;
  for (char *line = strstr(buf, "\r\n") + 2; line < eoh; line = strstr(line, "\r\n") + 2) {
    if (strncasecmp(line, "content-length:", 15) == 0) clen = strtoul(line + 15, NULL, 10);
    else if (strncasecmp(line, "connection:", 11) == 0 && strstr(line, "close") != NULL && strstr(line, "close") < strstr(line, "\r\n")) close_after = 1;
  }
  char *b = eoh + 4;
  size_t got = have - (size_t)(b - buf);
  size_t keep = 0;
  if (out != NULL && cap > 0) {
    keep = got < cap - 1 ? got : cap - 1;
    memcpy(out, b, keep);
  }
  while (got < clen) {
    char tmp[1024];
    ssize_t r = recv(s->sock, tmp, clen - got < sizeof tmp ? clen - got : sizeof tmp, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) goto broken;
    if (out != NULL && keep < cap - 1) {
      size_t c = (size_t)r < cap - 1 - keep ? (size_t)r : cap - 1 - keep;
      memcpy(out + keep, tmp, c);
      keep += c;
    }
    got += (size_t)r;
  }
  if (out != NULL && cap > 0) out[keep] = '\0';
  if (close_after) {
    close(s->sock);
    s->sock = -1;
  }
  return status;

broken:
  close(s->sock);
  s->sock = -1;
  return -1;
}

/* A kept-alive socket may have been closed by the server meanwhile: one retry on a fresh one. */
NOINSTR static int http(struct thread_state *s, const char *method, const char *path, const char *type,
                        const void *body, size_t len, char *out, size_t cap) {
  int st = http_once(s, method, path, type, body, len, out, cap);
  if (st < 0) st = http_once(s, method, path, type, body, len, out, cap);
  return st;
}

NOINSTR static int json_call(struct thread_state *s, const char *method, const char *path, const char *json, char *out, size_t cap) {
  return http(s, method, path, "application/json", json, strlen(json), out, cap);
}

/* KCOVD_ENABLE: open a descriptor, KCOV_INIT_TRACE and KCOV_ENABLE for this tid. */
NOINSTR static int setup(struct thread_state *s) {
  char path[512], body[256], reply[2048];
  pid_t pid = getpid();
  if (s->tid != pid) {
    /* A second thread of this process: tell the kernel which process it belongs to. */
    snprintf(path, sizeof path, "/v1/kernels/%s/threads/%ld", cfg.kernel, s->tid);
    snprintf(body, sizeof body, "{\"pid\":%ld}", (long)pid);
    json_call(s, "PUT", path, body, reply, sizeof reply);
  }
  snprintf(path, sizeof path, "/v1/kernels/%s/descriptors", cfg.kernel);
  snprintf(body, sizeof body, "{\"tid\":%ld}", s->tid);
  int st = json_call(s, "POST", path, body, reply, sizeof reply);
  const char *f = strstr(reply, "\"fd\":");
  if (st != 201 || f == NULL) {
    warn("kcovd_rt: open: HTTP %d %s\n", st, st > 0 ? reply : "(no connection)");
    return -1;
  }
  s->fd = atoi(f + 5);
  snprintf(path, sizeof path, "/v1/kernels/%s/descriptors/%d/ioctl/KCOV_INIT_TRACE", cfg.kernel, s->fd);
  snprintf(body, sizeof body, "{\"tid\":%ld,\"arg\":%ld}", s->tid, cfg.words);
  if ((st = json_call(s, "POST", path, body, reply, sizeof reply)) != 200) {
    warn("kcovd_rt: KCOV_INIT_TRACE: HTTP %d %s\n", st, st > 0 ? reply : "");
    return -1;
  }
  snprintf(path, sizeof path, "/v1/kernels/%s/descriptors/%d/ioctl/KCOV_ENABLE", cfg.kernel, s->fd);
  snprintf(body, sizeof body, "{\"tid\":%ld,\"arg\":\"%s\"}", s->tid, cfg.enable);
  if ((st = json_call(s, "POST", path, body, reply, sizeof reply)) != 200) {
    warn("kcovd_rt: KCOV_ENABLE: HTTP %d %s\n", st, st > 0 ? reply : "");
    return -1;
  }
  return 0;
}

/* Append the records just sent to KCOVD_RECORD, in one write per batch. */
NOINSTR static void record(struct thread_state *s, const char *kind, const uint64_t *w, unsigned n, unsigned stride) {
  if (cfg.record_fd < 0 || n == 0) return;
  size_t cap = (size_t)n * (stride * 19 + 32);
  char *buf = malloc(cap);
  if (buf == NULL) return;
  size_t at = 0;
  for (unsigned i = 0; i < n; i++) {
    at += (size_t)snprintf(buf + at, cap - at, "%s %ld", kind, s->tid);
    for (unsigned j = 0; j < stride; j++) at += (size_t)snprintf(buf + at, cap - at, " 0x%llx", (unsigned long long)w[i * stride + j]);
    buf[at++] = '\n';
  }
  ssize_t wr = write(cfg.record_fd, buf, at);
  (void)wr;
  free(buf);
}

NOINSTR static int post(struct thread_state *s, const char *kind, const uint64_t *w, unsigned n, unsigned stride) {
  if (n == 0) return 0;
  char path[512], reply[512];
  snprintf(path, sizeof path, "/v1/kernels/%s/threads/%ld/events?kind=%s", cfg.kernel, s->tid, kind);
  int st = http(s, "POST", path, "application/octet-stream", w, (size_t)n * stride * 8, reply, sizeof reply);
  if (st != 200) {
    warn("kcovd_rt: tid %ld: POST %s: HTTP %d %s\n", s->tid, path, st, st > 0 ? reply : "(no connection)");
    return -1;
  }
  s->requests++;
  record(s, kind, w, n, stride);
  return 0;
}

NOINSTR static int flush_state(struct thread_state *s) {
  if (s->failed) {
    s->npcs = s->ncmps = 0;
    return -1;
  }
  if (s->npcs == 0 && s->ncmps == 0) return 0;
  s->busy = 1;
  int rc = 0;
  if (s->setup == 0 && cfg.enable[0] != '\0') s->setup = setup(s) == 0 ? 1 : -1;
  if (s->setup < 0) rc = -1;
  if (rc == 0 && post(s, "pc", s->pcs, s->npcs, 1) == 0) s->sent_pcs += s->npcs;
  else rc = -1;
  if (rc == 0 && post(s, "cmp", s->cmps, s->ncmps, 4) == 0) s->sent_cmps += s->ncmps;
  else rc = -1;
  s->npcs = s->ncmps = 0;
  if (rc != 0) s->failed = 1;
  s->busy = 0;
  return rc;
}

NOINSTR static void finish(struct thread_state *s) {
  flush_state(s);
  s->busy = 1;
  if (cfg.verbose) {
    warn("kcovd_rt: tid %ld fd %d: %lu pcs, %lu cmps in %lu requests%s\n", s->tid, s->fd, s->sent_pcs, s->sent_cmps,
         s->requests, s->failed ? " (failed)" : "");
  }
  if (s->sock >= 0) close(s->sock);
  s->sock = -1;
}

/* pthread key destructor: the thread is exiting. */
NOINSTR static void thread_exit(void *p) {
  struct thread_state *s = p;
  finish(s);
  self = NULL;
  in_runtime = 1; /* any hook from here on (other destructors) is ignored */
  free(s);
}

/* atexit: the thread calling exit() (usually main). Others still running lose what they buffered. */
NOINSTR static void process_exit(void) {
  if (self != NULL) finish(self);
}

NOINSTR int kcovd_flush(void) {
  struct thread_state *s = state();
  return s == NULL ? 0 : flush_state(s);
}

NOINSTR int kcovd_fd(void) {
  return self == NULL ? -1 : self->fd;
}

/* ---- the hooks ------------------------------------------------------------ */

NOINSTR static inline void add_pc(uint64_t pc) {
  struct thread_state *s = state();
  if (s == NULL || !(cfg.want & WANT_PC)) return;
  s->pcs[s->npcs++] = pc;
  if (s->npcs == PC_RECORDS) flush_state(s);
}

NOINSTR static inline void add_cmp(uint64_t type, uint64_t arg1, uint64_t arg2, uint64_t pc) {
  struct thread_state *s = state();
  if (s == NULL || !(cfg.want & WANT_CMP)) return;
  uint64_t *r = &s->cmps[s->ncmps * 4];
  r[0] = type;
  r[1] = arg1;
  r[2] = arg2;
  r[3] = pc;
  if (++s->ncmps == CMP_RECORDS) flush_state(s);
}

#define RET_IP ((uint64_t)(uintptr_t)__builtin_return_address(0))

NOINSTR void __sanitizer_cov_trace_pc(void) { add_pc(RET_IP); }

NOINSTR void __sanitizer_cov_trace_cmp1(uint8_t a, uint8_t b) { add_cmp(KCOV_CMP_SIZE(0), a, b, RET_IP); }
NOINSTR void __sanitizer_cov_trace_cmp2(uint16_t a, uint16_t b) { add_cmp(KCOV_CMP_SIZE(1), a, b, RET_IP); }
NOINSTR void __sanitizer_cov_trace_cmp4(uint32_t a, uint32_t b) { add_cmp(KCOV_CMP_SIZE(2), a, b, RET_IP); }
NOINSTR void __sanitizer_cov_trace_cmp8(uint64_t a, uint64_t b) { add_cmp(KCOV_CMP_SIZE(3), a, b, RET_IP); }
NOINSTR void __sanitizer_cov_trace_const_cmp1(uint8_t a, uint8_t b) { add_cmp(KCOV_CMP_SIZE(0) | KCOV_CMP_CONST, a, b, RET_IP); }
NOINSTR void __sanitizer_cov_trace_const_cmp2(uint16_t a, uint16_t b) { add_cmp(KCOV_CMP_SIZE(1) | KCOV_CMP_CONST, a, b, RET_IP); }
NOINSTR void __sanitizer_cov_trace_const_cmp4(uint32_t a, uint32_t b) { add_cmp(KCOV_CMP_SIZE(2) | KCOV_CMP_CONST, a, b, RET_IP); }
NOINSTR void __sanitizer_cov_trace_const_cmp8(uint64_t a, uint64_t b) { add_cmp(KCOV_CMP_SIZE(3) | KCOV_CMP_CONST, a, b, RET_IP); }

/* As Linux kernel/kcov.c: cases[0] = count, cases[1] = size in bits, then the case values; one const comparison each. */
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

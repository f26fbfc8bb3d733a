/*
 * kcovd_rt: a SanitizerCoverage runtime for C programs built with
 *   gcc   -fsanitize-coverage=trace-pc[,trace-cmp]
 *   clang -fsanitize-coverage=trace-pc|trace-pc-guard[,trace-cmp]
 * that sends what the instrumentation reports to kcovd instead of a kernel's
 * kcov buffer. Link libkcovd_rt.a (compiled WITHOUT coverage flags) and
 * -lpthread. docs/c-runtime.md has the whole story; in short:
 *
 *   - the hooks append to a per-thread buffer (a few instructions, no
 *     syscalls, locks or allocation); a background sender thread posts full
 *     buffers while the program runs;
 *   - every record is either stored, or counted in one of the loss counters
 *     below and reported on stderr at exit;
 *   - configuration is read once, before main, from the environment
 *     (KCOVD_URL, KCOVD_KERNEL, KCOVD_ENABLE, KCOVD_WORDS, KCOVD_TID, ...).
 */
#ifndef KCOVD_RT_H
#define KCOVD_RT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What happened to the records of this process so far (all threads). */
struct kcovd_stats {
  uint64_t seen;            /* records the hooks received on traced threads */
  uint64_t sent;            /* records in requests the service answered 200 */
  uint64_t stored;          /* of those, stored in an area ("accepted") */
  uint64_t area_dropped;    /* of those, lost to a full area ("dropped", as the kernel loses them) */
  uint64_t ignored;         /* of those, not traced by the service ("ignored": no enabled descriptor, ...) */
  uint64_t runtime_dropped; /* never sent: queue full past KCOVD_WAIT_MS, service unreachable, failed request */
  uint64_t nested_lost;     /* never buffered: a hook ran inside a hook (signal handler) */
  uint64_t unconfirmed;     /* sent, but no reply within KCOVD_TIMEOUT_MS: may or may not be stored */
  uint64_t pending;         /* buffered or queued, not yet sent */
  uint64_t requests;        /* HTTP requests answered */
  uint64_t errors;          /* requests that failed (connection, timeout, non-2xx) */
  uint64_t restarts;        /* service restarts seen (a new kcovd-boot id) */
  uint64_t lost_to_restart; /* records stored before a restart, gone with it */
  uint64_t waited_ms;       /* time threads spent waiting for a free buffer (the service was slower) */
  uint32_t threads;         /* threads that traced */
  uint32_t ok;              /* 1: the runtime is configured and running */
};

/* Fill *st; returns 0 (or -1 when st is NULL). Safe to call from any thread. */
int kcovd_stats(struct kcovd_stats *st);

/*
 * Hand the calling thread's buffered records to the sender and wait (at most
 * KCOVD_TIMEOUT_MS) until the service answered for them. Call it before
 * reading the coverage of a descriptor the program itself enabled. Returns 0
 * when everything of this thread was sent, -1 otherwise.
 */
int kcovd_flush(void);

/* The descriptor the runtime opened for the calling thread (KCOVD_ENABLE), or -1. */
int kcovd_fd(void);

/* The tid the calling thread posts as, or -1 when it does not trace. */
long kcovd_tid(void);

/* The hooks the compilers call (declared for the runtime itself: gcc has its own built-in prototypes). */
#ifdef KCOVD_RT_INTERNAL
/* For the runtime and the reference recorder: hook code is never instrumented itself. */
#if defined(__has_attribute)
#if __has_attribute(no_sanitize_coverage)
#define NOINSTR __attribute__((no_sanitize_coverage))
#endif
#endif
#ifndef NOINSTR
#define NOINSTR
#endif
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define RET_IP ((uint64_t)(uintptr_t)__builtin_return_address(0))
void __sanitizer_cov_trace_pc(void);
void __sanitizer_cov_trace_pc_guard_init(uint32_t *start, uint32_t *stop);
void __sanitizer_cov_trace_pc_guard(uint32_t *guard);
void __sanitizer_cov_trace_cmp1(uint8_t arg1, uint8_t arg2);
void __sanitizer_cov_trace_cmp2(uint16_t arg1, uint16_t arg2);
void __sanitizer_cov_trace_cmp4(uint32_t arg1, uint32_t arg2);
void __sanitizer_cov_trace_cmp8(uint64_t arg1, uint64_t arg2);
void __sanitizer_cov_trace_const_cmp1(uint8_t arg1, uint8_t arg2);
void __sanitizer_cov_trace_const_cmp2(uint16_t arg1, uint16_t arg2);
void __sanitizer_cov_trace_const_cmp4(uint32_t arg1, uint32_t arg2);
void __sanitizer_cov_trace_const_cmp8(uint64_t arg1, uint64_t arg2);
void __sanitizer_cov_trace_switch(uint64_t val, uint64_t *cases);
void __sanitizer_cov_trace_cmpf(float arg1, float arg2);
void __sanitizer_cov_trace_cmpd(double arg1, double arg2);
#endif

#ifdef __cplusplus
}
#endif

#endif

/*
 * kcovd_rt: a coverage runtime for programs built with
 *   gcc -fsanitize-coverage=trace-pc,trace-cmp
 * that sends what the instrumentation reports to kcovd instead of a kernel's
 * kcov buffer. Link kcovd_rt.o (compiled WITHOUT -fsanitize-coverage) and
 * -lpthread. Configuration comes from the environment:
 *
 *   KCOVD_URL      http://host:port of kcovd (default http://127.0.0.1:5268)
 *   KCOVD_KERNEL   kernel name (default "default")
 *   KCOV_TOKEN     bearer token, when the server wants one
 *   KCOVD_ENABLE   pc | cmp: each thread opens its own descriptor, sizes it
 *                  (KCOV_INIT_TRACE, KCOVD_WORDS words, default 65536) and
 *                  enables it for its tid (KCOV_ENABLE) before its first batch.
 *                  Unset: records are posted as they are and whoever enabled a
 *                  descriptor for the tid (a test, the CLI) gets them.
 *   KCOVD_TID      post as this tid instead of gettid() (single-threaded use)
 *   KCOVD_RECORD   append every record sent to this file, one a line:
 *                  "pc <tid> 0x<pc>" or "cmp <tid> 0x<type> 0x<arg1> 0x<arg2> 0x<pc>"
 *   KCOVD_VERBOSE  1: a summary line per thread on stderr
 *
 * Records are buffered per thread (one PC buffer, one CMP buffer) and posted
 * to POST /v1/kernels/{k}/threads/{tid}/events?kind=pc|cmp as
 * application/octet-stream over a kept-alive HTTP/1.1 socket when a buffer
 * fills, when the thread exits and at exit().
 */
#ifndef KCOVD_RT_H
#define KCOVD_RT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Post the calling thread's buffered records now. Returns 0, or -1 on failure. */
int kcovd_flush(void);

/* The descriptor this thread's runtime opened (KCOVD_ENABLE), or -1. */
int kcovd_fd(void);

/* The hooks gcc's -fsanitize-coverage=trace-pc,trace-cmp calls. */
void __sanitizer_cov_trace_pc(void);
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

#ifdef __cplusplus
}
#endif

#endif

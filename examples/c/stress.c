/*
 * stress: an instrumented program for the runtime's tests (test/examples/).
 *   stress work N            one thread
 *   stress threads K N       K threads at once, each its own seed
 *   stress fork N            parent and child run at the same time
 *   stress signal N HZ       an instrumented SIGALRM handler under an HZ timer (0: none)
 *   stress handler N         the handler called N times, no timer
 *   stress abort N           work, then abort()
 *   stress exit N            work, then _exit(0)
 *   stress slow ROUNDS MS    work, kcovd_flush(), sleep MS, ROUNDS times
 *   stress exec N            work, then execv itself as "stress work N"
 *   stress until FILE MS     the same until FILE exists, then 10 rounds more
 * Each line it prints names the tid a piece of work ran on; "stats ..." is kcovd_stats().
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kcovd_rt.h"

static int classify(int x) {
  switch (x % 5) {
    case 0: return 10;
    case 1: return 20;
    case 3: return 40;
    default: return x & 1 ? 7 : 9;
  }
}

static unsigned long work(unsigned long seed, long n) {
  unsigned long acc = 0;
  for (long i = 0; i < n; i++) {
    seed = seed * 6364136223846793005UL + 1442695040888963407UL;
    int v = (int)(seed >> 33) & 0xff;
    if (v < 0x40) acc += (unsigned long)classify(v);
    else if (v == 0x7f) acc ^= seed;
    else if ((unsigned char)v > 200) acc -= 3;
    else acc += (unsigned long)v;
  }
  return acc;
}

static void print_stats(const char *who) {
  struct kcovd_stats st;
  kcovd_flush();
  kcovd_flush(); /* a second flush finds an empty buffer: the thread must go on recording into it */
  kcovd_stats(&st);
  printf("stats %s seen=%llu sent=%llu stored=%llu area_dropped=%llu ignored=%llu runtime_dropped=%llu nested_lost=%llu "
         "unconfirmed=%llu pending=%llu errors=%llu restarts=%llu\n",
         who, (unsigned long long)st.seen, (unsigned long long)st.sent, (unsigned long long)st.stored,
         (unsigned long long)st.area_dropped, (unsigned long long)st.ignored, (unsigned long long)st.runtime_dropped,
         (unsigned long long)st.nested_lost, (unsigned long long)st.unconfirmed, (unsigned long long)st.pending,
         (unsigned long long)st.errors, (unsigned long long)st.restarts);
  fflush(stdout);
}

struct job {
  int index;
  long n;
  long tid;
  int fd;
  unsigned long result;
};

static void *run_job(void *p) {
  struct job *j = p;
  j->result = work((unsigned long)j->index + 1, j->n);
  j->tid = kcovd_tid();
  j->fd = kcovd_fd();
  return NULL;
}

static volatile unsigned long handler_calls, handler_acc;

/* The handler's own code: a fixed path, so each call records the same PCs. */
__attribute__((noinline)) void handler_work(void) {
  for (int i = 0; i < 6; i++) {
    if (i & 1) handler_acc += (unsigned long)i;
    else handler_acc ^= (unsigned long)i;
  }
}

void on_alarm(int sig) {
  (void)sig;
  handler_calls++;
  handler_work();
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: stress work|threads|fork|signal|abort|exit|slow ...\n");
    return 2;
  }
  const char *mode = argv[1];
  long a = atol(argv[2]), b = argc > 3 ? atol(argv[3]) : 0;
  if (strcmp(mode, "work") == 0) {
    unsigned long r = work(1, a);
    printf("work tid %ld fd %d %lu\n", kcovd_tid(), kcovd_fd(), r);
    print_stats("main");
    return 0;
  }
  if (strcmp(mode, "threads") == 0) {
    struct job jobs[64];
    pthread_t th[64];
    if (a < 1 || a > 64) return 2;
    for (int i = 0; i < a; i++) {
      jobs[i] = (struct job){ .index = i, .n = b };
      if (pthread_create(&th[i], NULL, run_job, &jobs[i]) != 0) return 1;
    }
    for (int i = 0; i < a; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < a; i++) printf("thread %d tid %ld fd %d %lu\n", i, jobs[i].tid, jobs[i].fd, jobs[i].result);
    print_stats("main");
    return 0;
  }
  if (strcmp(mode, "fork") == 0) {
    work(100, a / 4);
    fflush(stdout);
    pid_t c = fork();
    if (c < 0) return 1;
    if (c == 0) {
      unsigned long r = work(200, a);
      printf("child tid %ld fd %d %lu\n", kcovd_tid(), kcovd_fd(), r);
      print_stats("child");
      exit(0);
    }
    unsigned long r = work(300, a);
    int status = 0;
    waitpid(c, &status, 0);
    printf("parent tid %ld fd %d %lu child %d status %d\n", kcovd_tid(), kcovd_fd(), r, (int)c, status);
    print_stats("parent");
    return 0;
  }
  if (strcmp(mode, "signal") == 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    /* no branch on HZ: with or without the timer the main path records the same PCs */
    long us = (1000000 / (b + (b == 0))) * (b != 0);
    struct itimerval it = { { 0, us }, { 0, us } };
    setitimer(ITIMER_REAL, &it, NULL);
    unsigned long r = work(1, a);
    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &off, NULL);
    printf("signal tid %ld fd %d %lu handler_calls %lu\n", kcovd_tid(), kcovd_fd(), r, handler_calls);
    print_stats("main");
    return 0;
  }
  if (strcmp(mode, "handler") == 0) {
    for (long i = 0; i < a; i++) on_alarm(0);
    return 0;
  }
  if (strcmp(mode, "abort") == 0) {
    unsigned long r = work(1, a);
    printf("abort tid %ld fd %d %lu\n", kcovd_tid(), kcovd_fd(), r);
    fflush(stdout);
    abort();
  }
  if (strcmp(mode, "exit") == 0) {
    unsigned long r = work(1, a);
    printf("exit tid %ld fd %d %lu\n", kcovd_tid(), kcovd_fd(), r);
    fflush(stdout);
    _exit(0);
  }
  if (strcmp(mode, "exec") == 0) {
    unsigned long r = work(1, a);
    printf("exec tid %ld fd %d %lu\n", kcovd_tid(), kcovd_fd(), r);
    fflush(stdout);
    char *args[] = { argv[0], "work", argv[2], NULL };
    execv("/proc/self/exe", args);
    return 1;
  }
  if (strcmp(mode, "until") == 0) {
    volatile unsigned long sink = 0;
    long more = -1;
    for (unsigned long i = 0; more != 0; i++) {
      sink += work(i, 2000);
      kcovd_flush();
      usleep((useconds_t)b * 1000);
      if (more > 0) more--;
      else if (more < 0 && access(argv[2], F_OK) == 0) more = 10;
    }
    printf("until tid %ld fd %d\n", kcovd_tid(), kcovd_fd());
    print_stats("main");
    return 0;
  }
  if (strcmp(mode, "slow") == 0) {
    volatile unsigned long sink = 0;
    for (long i = 0; i < a; i++) {
      sink += work((unsigned long)i, 2000);
      kcovd_flush();
      usleep((useconds_t)b * 1000);
    }
    printf("slow tid %ld fd %d\n", kcovd_tid(), kcovd_fd());
    print_stats("main");
    return 0;
  }
  return 2;
}

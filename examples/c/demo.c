/*
 * demo: a small program built with -fsanitize-coverage=trace-pc,trace-cmp.
 * Two threads run some branches, comparisons and a switch; kcovd_rt sends
 * every basic block (PC mode) or comparison (CMP mode) to kcovd.
 *   ./demo [iterations]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int classify(int x) {
  switch (x % 5) {
    case 0: return 10;
    case 1: return 20;
    case 3: return 40;
    default: return x & 1 ? 7 : 9;
  }
}

static unsigned long work(unsigned long seed, int n) {
  unsigned long acc = 0;
  for (int i = 0; i < n; i++) {
    seed = seed * 6364136223846793005UL + 1442695040888963407UL;
    int v = (int)(seed >> 33) & 0xff;
    if (v < 0x40) acc += (unsigned long)classify(v);
    else if (v == 0x7f) acc ^= seed;
    else if ((unsigned char)v > 200) acc -= 3;
    else acc += (unsigned long)v;
  }
  return acc;
}

static void *worker(void *arg) {
  unsigned long *r = arg;
  *r = work(*r, 300);
  return NULL;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 200;
  if (n < 0 || strcmp(argv[0], "") == 0) return 2;
  unsigned long other = 42;
  pthread_t t;
  if (pthread_create(&t, NULL, worker, &other) != 0) return 1;
  unsigned long mine = work(7, n);
  pthread_join(t, NULL);
  printf("demo: %lu %lu\n", mine, other);
  return 0;
}

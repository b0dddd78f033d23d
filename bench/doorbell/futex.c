/*
 * The baseline for bench/doorbell: the same "ring, then wait for the acknowledgement" pattern
 * between two plain threads of one C process, with raw futexes and nothing else.
 *
 *   futex ROUNDS GAP_US
 *
 * The ringer stamps CLOCK_MONOTONIC, bumps the doorbell word and FUTEX_WAKEs it; the sleeper,
 * blocked in FUTEX_WAIT on that word, stamps the clock as soon as it runs (its "handler"),
 * stores the acknowledgement and wakes the ringer, which waits for it. Before each ring the
 * ringer sleeps GAP_US, so the sleeper is asleep in the kernel again, as a halted vCPU is.
 * Prints one JSON line: every ring's wake latency and round trip, in nanoseconds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static _Atomic uint32_t bell;
static _Atomic uint32_t ack;
static _Atomic int64_t woke_at;
static long rounds;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void futex_wait(_Atomic uint32_t *word, uint32_t value) {
  while (atomic_load(word) == value) {
    long r = syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, value, NULL, NULL, 0);
    if (r != 0 && errno != EAGAIN && errno != EINTR) {
      perror("futex wait");
      exit(1);
    }
  }
}

static void futex_wake(_Atomic uint32_t *word) {
  if (syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0) < 0) {
    perror("futex wake");
    exit(1);
  }
}

static void *sleeper(void *arg) {
  (void)arg;
  for (long n = 1; n <= rounds; n++) {
    futex_wait(&bell, (uint32_t)(n - 1));
    atomic_store(&woke_at, now_ns());
    atomic_store(&ack, (uint32_t)n);
    futex_wake(&ack);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s ROUNDS GAP_US\n", argv[0]);
    return 2;
  }
  rounds = atol(argv[1]);
  long gap_us = atol(argv[2]);
  if (rounds < 1 || gap_us < 0) {
    fprintf(stderr, "ROUNDS must be positive and GAP_US not negative\n");
    return 2;
  }
  int64_t *latency = calloc((size_t)rounds, sizeof *latency);
  int64_t *round_trip = calloc((size_t)rounds, sizeof *round_trip);
  if (!latency || !round_trip) return 1;
  pthread_t t;
  if (pthread_create(&t, NULL, sleeper, NULL) != 0) return 1;
  struct timespec gap = {.tv_sec = gap_us / 1000000, .tv_nsec = (gap_us % 1000000) * 1000};
  for (long n = 1; n <= rounds; n++) {
    if (gap_us > 0) nanosleep(&gap, NULL);
    int64_t t0 = now_ns();
    atomic_store(&bell, (uint32_t)n);
    futex_wake(&bell);
    futex_wait(&ack, (uint32_t)(n - 1));
    int64_t t1 = now_ns();
    latency[n - 1] = atomic_load(&woke_at) - t0;
    round_trip[n - 1] = t1 - t0;
  }
  pthread_join(t, NULL);
  printf("{\"latencyNs\":[");
  for (long i = 0; i < rounds; i++) printf("%s%lld", i ? "," : "", (long long)latency[i]);
  printf("],\"roundTripNs\":[");
  for (long i = 0; i < rounds; i++) printf("%s%lld", i ? "," : "", (long long)round_trip[i]);
  printf("]}\n");
  return 0;
}

/* The read-bandwidth probe of the benchmarks (scripts/read_bandwidth.py compiles it with gcc -O3 -march=native
 * and calls it through ctypes):
 * THREADS threads each sum one slice of a buffer far larger than the last-level cache, as a memory-bound
 * decode kernel reads its weights.  A C loop, because numpy's reduction (the earlier probe) is not vectorized
 * well enough to reach the memory's rate on this CPU: it read 8.8 GB/s where this loop reads about 14.
 *
 *   int    read_probe_init(size_t bytes);   allocates and first-touches the buffer (0 on success)
 *   double read_probe_gbps(int threads);    one pass over the whole buffer, in GB/s
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t* buffer = NULL;
static size_t words = 0;
static volatile uint64_t sink;  /* keeps the sums alive */

typedef struct {
  const uint64_t* begin;
  size_t count;
  uint64_t sum;
} slice;

static void* sum_slice(void* arg) {
  slice* s = (slice*)arg;
  uint64_t acc = 0;
  for (size_t i = 0; i < s->count; ++i) acc += s->begin[i];  /* vectorized at -O3 (integer adds reassociate) */
  s->sum = acc;
  return NULL;
}

int read_probe_init(size_t bytes) {
  if (buffer != NULL && words == bytes / sizeof(uint64_t)) return 0;
  free(buffer);
  buffer = NULL;
  words = bytes / sizeof(uint64_t);
  if (posix_memalign((void**)&buffer, 64, words * sizeof(uint64_t)) != 0) return 1;
  memset(buffer, 1, words * sizeof(uint64_t));  /* first touch: the pages exist before timing */
  return 0;
}

double read_probe_gbps(int threads) {
  if (buffer == NULL || threads < 1 || threads > 64) return -1.0;
  pthread_t ids[64];
  slice slices[64];
  const size_t per = words / (size_t)threads;
  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (int t = 0; t < threads; ++t) {
    slices[t].begin = buffer + (size_t)t * per;
    slices[t].count = per;
    pthread_create(&ids[t], NULL, sum_slice, &slices[t]);
  }
  uint64_t total = 0;
  for (int t = 0; t < threads; ++t) {
    pthread_join(ids[t], NULL);
    total += slices[t].sum;
  }
  clock_gettime(CLOCK_MONOTONIC, &end);
  sink = total;
  const double seconds = (double)(end.tv_sec - start.tv_sec) + 1e-9 * (double)(end.tv_nsec - start.tv_nsec);
  return (double)(per * (size_t)threads * sizeof(uint64_t)) / seconds / 1e9;
}

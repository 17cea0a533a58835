// SPDX-License-Identifier: GPL-2.0
/* The hop probes' reader: drains the pinned ring buffer of lab/hops/hop-probe.c into a file for
 * the length of one run, and says what the kernel counted and how its clock relates to D-ITG's.
 *
 *   hop-reader RING_PIN COUNTS_PIN OUT_FILE
 *
 * On start it discards what the ring holds from before (stamps of no run), then prints
 *   ready
 * and drains the ring every POLL_MS (the probes submit without wakeups) until SIGTERM or SIGINT
 * (also sent when the process that started it dies);
 * then it drains what is left and prints one line of JSON:
 *   {"records":N,"offsetStartNs":"..","offsetEndNs":"..","offsetUncertaintyNs":U,
 *    "stamped":[per point],"dropped":[per point]}
 * records: written to OUT_FILE (struct hop_record each); stamped/dropped: the kernel's counts over
 * the run (hop_counts, summed over CPUs); offset: CLOCK_REALTIME - CLOCK_MONOTONIC in ns, read at
 * start and end (D-ITG stamps with the first, the probes with the second), U the larger half-width
 * of the brackets it was read in. Exit status 0, or 1 with a message on stderr.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "hop-maps.h"

#define POLL_MS 20
#define OFFSET_TRIES 9

static volatile sig_atomic_t stop;
static FILE *out;
static unsigned long long written;
static int discarding;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static long long now_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* CLOCK_REALTIME - CLOCK_MONOTONIC from the narrowest of a few monotonic brackets of a realtime read. */
static long long clock_offset(long long *half_width)
{
	long long best = 0, width = -1;

	for (int i = 0; i < OFFSET_TRIES; i++) {
		long long m1 = now_ns(CLOCK_MONOTONIC);
		long long r = now_ns(CLOCK_REALTIME);
		long long m2 = now_ns(CLOCK_MONOTONIC);

		if (width < 0 || m2 - m1 < width) {
			width = m2 - m1;
			best = r - (m1 + (m2 - m1) / 2);
		}
	}
	*half_width = (width + 1) / 2;
	return best;
}

static int read_counts(int fd, int cpus, struct hop_count *sum)
{
	struct hop_count *per_cpu = calloc(cpus, sizeof(*per_cpu));

	if (!per_cpu)
		return -1;
	for (__u32 point = 0; point < HOP_POINTS; point++) {
		sum[point].stamped = sum[point].dropped = 0;
		if (bpf_map_lookup_elem(fd, &point, per_cpu)) {
			free(per_cpu);
			return -1;
		}
		for (int c = 0; c < cpus; c++) {
			sum[point].stamped += per_cpu[c].stamped;
			sum[point].dropped += per_cpu[c].dropped;
		}
	}
	free(per_cpu);
	return 0;
}

static int on_record(void *ctx, void *data, size_t size)
{
	(void)ctx;
	if (discarding)
		return 0;
	if (size != sizeof(struct hop_record) || fwrite(data, size, 1, out) != 1)
		return -EIO;
	written++;
	return 0;
}

static int fail(const char *what)
{
	fprintf(stderr, "hop-reader: %s: %s\n", what, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	struct hop_count before[HOP_POINTS], after[HOP_POINTS];
	struct timespec pause = { 0, POLL_MS * 1000000L };
	long long start_width, end_width, start_offset, end_offset;
	struct ring_buffer *ring;
	int ring_fd, counts_fd, cpus, err;

	if (argc != 4) {
		fprintf(stderr, "usage: hop-reader RING_PIN COUNTS_PIN OUT_FILE\n");
		return 2;
	}
	ring_fd = bpf_obj_get(argv[1]);
	if (ring_fd < 0)
		return fail(argv[1]);
	counts_fd = bpf_obj_get(argv[2]);
	if (counts_fd < 0)
		return fail(argv[2]);
	cpus = libbpf_num_possible_cpus();
	if (cpus <= 0)
		return fail("number of CPUs");
	out = fopen(argv[3], "wb");
	if (!out)
		return fail(argv[3]);
	ring = ring_buffer__new(ring_fd, on_record, NULL, NULL);
	if (!ring)
		return fail("ring buffer");
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	/* A reader outlives no campaign: it stops with the process that started it. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		stop = 1;

	discarding = 1;
	if (ring_buffer__consume(ring) < 0)
		return fail("draining the ring");
	discarding = 0;
	if (read_counts(counts_fd, cpus, before))
		return fail("reading hop_counts");
	start_offset = clock_offset(&start_width);
	printf("ready\n");
	fflush(stdout);

	while (!stop) {
		err = ring_buffer__consume(ring);
		if (err < 0) {
			errno = -err;
			return fail("draining the ring");
		}
		nanosleep(&pause, NULL);
	}
	/* The last stamps: a record reserved before the counts were read is committed by now. */
	if (read_counts(counts_fd, cpus, after))
		return fail("reading hop_counts");
	err = ring_buffer__consume(ring);
	if (err < 0) {
		errno = -err;
		return fail("draining the ring");
	}
	end_offset = clock_offset(&end_width);
	if (fclose(out))
		return fail(argv[3]);
	ring_buffer__free(ring);

	printf("{\"records\":%llu,\"offsetStartNs\":\"%lld\",\"offsetEndNs\":\"%lld\",\"offsetUncertaintyNs\":%lld,\"stamped\":[",
	       written, start_offset, end_offset, start_width > end_width ? start_width : end_width);
	for (int p = 0; p < HOP_POINTS; p++)
		printf("%s%llu", p ? "," : "", (unsigned long long)(after[p].stamped - before[p].stamped));
	printf("],\"dropped\":[");
	for (int p = 0; p < HOP_POINTS; p++)
		printf("%s%llu", p ? "," : "", (unsigned long long)(after[p].dropped - before[p].dropped));
	printf("]}\n");
	return 0;
}

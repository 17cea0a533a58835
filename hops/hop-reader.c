// SPDX-License-Identifier: GPL-2.0
/* The hop probes' reader: drains the stamps of hops/hop-probe.c into a file for the length of one
 * run, and says what the kernel counted and how its clock relates to D-ITG's. Raw bpf() and
 * perf_event_open() system calls and the C library only: it builds where libbpf does not exist (a
 * cloud worker running Ubuntu 20.04).
 *
 *   hop-reader ringbuf RING_PIN COUNTS_PIN OUT_FILE [--daemon STATE_DIR] [--max-seconds S]
 *   hop-reader perf EVENTS_PIN COUNTS_PIN OUT_FILE [--pages N] [--daemon STATE_DIR] [--max-seconds S]
 *
 * ringbuf: RING_PIN is the pinned hop_ring (kernel 5.8+), mapped and consumed as libbpf does.
 * perf:    EVENTS_PIN is the pinned hop_events perf event array; the reader opens one
 *          PERF_COUNT_SW_BPF_OUTPUT event per online CPU with a ring of N data pages (a power of
 *          two, default 256), stores its fd at the CPU's index of the array, and drains the rings.
 *          A ring wakes the reader only when half full; otherwise it is drained every POLL_MS.
 *          The kernel removes the entries when the reader closes the array.
 *
 * On start it discards what a ring holds from before (stamps of no run), then says
 *   ready
 * and drains every POLL_MS until SIGTERM or SIGINT (in the foreground also when the process that
 * started it dies), or until --max-seconds have passed (the summary then says "expired": true);
 * then it drains what is left and gives one line of JSON:
 *   {"records":N,"offsetStartNs":"..","offsetEndNs":"..","offsetUncertaintyNs":U,
 *    "stamped":[per point],"dropped":[per point],"lost":L,"output":"perf"|"ringbuf","expired":B,
 *    "sampleEvery":N}
 * records: written to OUT_FILE (struct hop_record each); stamped/dropped: the kernel's counts over
 * the run (hop_counts, summed over CPUs: a dropped stamp is one the probe could not write, ring or
 * buffer full or no buffer on its CPU); lost: what the perf rings themselves reported lost
 * (PERF_RECORD_LOST; the same stamps are counted in dropped), 0 for the ring buffer; offset:
 * CLOCK_REALTIME - CLOCK_MONOTONIC in ns, read at start and end (D-ITG stamps with the first, the
 * probes with the second), U the larger half-width of the brackets it was read in; sampleEvery:
 * the probes stamp 1 in N D-ITG packets (hop-maps.h HOP_SAMPLE_EVERY, the header both are built from).
 *
 * In the foreground "ready" and the summary go to stdout; exit status 0, or 1 with a message on
 * stderr. With --daemon the reader detaches (a remote shell's command returns while it runs): the
 * command prints "ready" once the detached reader is reading, or its error and exits 1; the detached
 * reader writes STATE_DIR/pid, holds a lock on STATE_DIR/lock until it exits (`flock STATE_DIR/lock
 * true` waits for its end), and leaves the summary in STATE_DIR/summary.json, or its error in
 * STATE_DIR/error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "hop-maps.h"

#define POLL_MS 20
#define OFFSET_TRIES 9
#define DEFAULT_PERF_PAGES 256
/* The ring buffer's record header (kernel ABI, include/uapi/linux/bpf.h of 5.8: BPF_RINGBUF_*; the 5.4 headers lack them). */
#define RINGBUF_BUSY_BIT (1U << 31)
#define RINGBUF_DISCARD_BIT (1U << 30)
#define RINGBUF_HDR_SZ 8

static volatile sig_atomic_t stop;
static volatile sig_atomic_t expired;
static FILE *out;
static unsigned long long written, lost;
static int discarding;
static char error_text[512];

static void on_signal(int sig)
{
	if (sig == SIGALRM)
		expired = 1;
	stop = 1;
}

/* Keeps the reason of a failure for the summary's place; with_errno adds what the system call said. */
static int failure(int with_errno, const char *fmt, va_list ap)
{
	int err = errno;
	int n = vsnprintf(error_text, sizeof(error_text), fmt, ap);

	if (with_errno && n > 0 && (size_t)n < sizeof(error_text))
		snprintf(error_text + n, sizeof(error_text) - n, ": %s", strerror(err));
	return -1;
}

static int fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	failure(0, fmt, ap);
	va_end(ap);
	return -1;
}

static int fail_sys(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	failure(1, fmt, ap);
	va_end(ap);
	return -1;
}

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static int obj_get(const char *path)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.pathname = (__u64)(unsigned long)path;
	return sys_bpf(BPF_OBJ_GET, &attr);
}

static int map_info(int fd, struct bpf_map_info *info)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	memset(info, 0, sizeof(*info));
	attr.info.bpf_fd = fd;
	attr.info.info_len = sizeof(*info);
	attr.info.info = (__u64)(unsigned long)info;
	return sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &attr);
}

static int map_lookup(int fd, const void *key, void *value)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.map_fd = fd;
	attr.key = (__u64)(unsigned long)key;
	attr.value = (__u64)(unsigned long)value;
	return sys_bpf(BPF_MAP_LOOKUP_ELEM, &attr);
}

static int map_update(int fd, const void *key, const void *value)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.map_fd = fd;
	attr.key = (__u64)(unsigned long)key;
	attr.value = (__u64)(unsigned long)value;
	attr.flags = BPF_ANY;
	return sys_bpf(BPF_MAP_UPDATE_ELEM, &attr);
}

/* CPUs of a list such as "0-3,5" (/sys/devices/system/cpu/{possible,online}): marks them in `set`
 * (HOP_MAX_CPUS entries) and returns the highest number + 1, or -1. */
static int cpu_list(const char *file, unsigned char *set)
{
	char buf[4096], *p;
	int fd = open(file, O_RDONLY), top = 0;
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	for (p = buf; *p && *p != '\n';) {
		char *end;
		long a = strtol(p, &end, 10), b = a;

		if (end == p)
			return -1;
		if (*end == '-')
			b = strtol(end + 1, &end, 10);
		if (a < 0 || b < a || b >= HOP_MAX_CPUS)
			return -1;
		for (long c = a; c <= b; c++)
			set[c] = 1;
		if (b + 1 > top)
			top = b + 1;
		p = *end == ',' ? end + 1 : end;
	}
	return top;
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

/* hop_counts summed over the possible CPUs (a per-CPU value is 8-byte aligned per CPU). */
static int read_counts(int fd, int cpus, struct hop_count *sum)
{
	struct hop_count *per_cpu = calloc(cpus, sizeof(*per_cpu));

	if (!per_cpu)
		return fail_sys("reading hop_counts");
	for (__u32 point = 0; point < HOP_POINTS; point++) {
		sum[point].stamped = sum[point].dropped = 0;
		if (map_lookup(fd, &point, per_cpu)) {
			free(per_cpu);
			return fail_sys("reading hop_counts");
		}
		for (int c = 0; c < cpus; c++) {
			sum[point].stamped += per_cpu[c].stamped;
			sum[point].dropped += per_cpu[c].dropped;
		}
	}
	free(per_cpu);
	return 0;
}

static int on_record(const void *data, size_t size)
{
	if (discarding)
		return 0;
	if (size < sizeof(struct hop_record))
		return fail("a record of %zu bytes; expected %zu", size, sizeof(struct hop_record));
	if (fwrite(data, sizeof(struct hop_record), 1, out) != 1)
		return fail_sys("writing the records");
	written++;
	return 0;
}

/* --------------------------------------------------------------------------------------------- */
/* The ring buffer, consumed as libbpf's ring_buffer__consume does. */

struct ring {
	unsigned long *consumer_pos;
	unsigned long *producer_pos;
	unsigned char *data;
	unsigned long mask;
};

static int ring_open(int fd, struct ring *r)
{
	struct bpf_map_info info;
	long page = sysconf(_SC_PAGESIZE);
	void *p;

	if (map_info(fd, &info))
		return fail_sys("reading the ring's map info");
	if (info.type != HOP_MAP_TYPE_RINGBUF)
		return fail("the ring pin holds a map of type %u, not a ring buffer", info.type);
	p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return fail_sys("mapping the ring's consumer page");
	r->consumer_pos = p;
	/* The data pages are mapped twice in a row: a record that wraps reads as one piece. */
	p = mmap(NULL, page + 2 * (size_t)info.max_entries, PROT_READ, MAP_SHARED, fd, page);
	if (p == MAP_FAILED)
		return fail_sys("mapping the ring's data");
	r->producer_pos = p;
	r->data = (unsigned char *)p + page;
	r->mask = info.max_entries - 1;
	return 0;
}

static int ring_consume(struct ring *r)
{
	unsigned long cons = __atomic_load_n(r->consumer_pos, __ATOMIC_ACQUIRE);

	for (;;) {
		unsigned long prod = __atomic_load_n(r->producer_pos, __ATOMIC_ACQUIRE);
		int got = 0;

		while (cons < prod) {
			__u32 *header = (__u32 *)(r->data + (cons & r->mask));
			__u32 len = __atomic_load_n(header, __ATOMIC_ACQUIRE);

			/* Reserved, not yet committed: the records behind it wait for the next pass. */
			if (len & RINGBUF_BUSY_BIT)
				return 0;
			got = 1;
			cons += ((len & ~RINGBUF_DISCARD_BIT) + RINGBUF_HDR_SZ + 7) & ~7UL;
			if (!(len & RINGBUF_DISCARD_BIT) && on_record((unsigned char *)header + RINGBUF_HDR_SZ, len & ~RINGBUF_DISCARD_BIT))
				return -1;
			__atomic_store_n(r->consumer_pos, cons, __ATOMIC_RELEASE);
		}
		if (!got)
			return 0;
	}
}

/* --------------------------------------------------------------------------------------------- */
/* Perf rings, one per online CPU. */

struct perf_ring {
	int fd;
	struct perf_event_mmap_page *meta;
	unsigned char *data;
	unsigned long size;
};

static struct perf_ring rings[HOP_MAX_CPUS];
static int ring_count;
/* A record that wraps around its ring's end is copied here: a perf record is under 64 KiB. */
static unsigned char scratch[65536];

static int perf_open(int events_fd, int epoll_fd, unsigned pages)
{
	unsigned char online[HOP_MAX_CPUS] = { 0 }, possible[HOP_MAX_CPUS] = { 0 };
	struct bpf_map_info info;
	long page = sysconf(_SC_PAGESIZE);
	int top;

	if (map_info(events_fd, &info))
		return fail_sys("reading the perf event array's map info");
	if (info.type != BPF_MAP_TYPE_PERF_EVENT_ARRAY)
		return fail("the events pin holds a map of type %u, not a perf event array", info.type);
	top = cpu_list("/sys/devices/system/cpu/possible", possible);
	if (top < 0 || cpu_list("/sys/devices/system/cpu/online", online) < 0)
		return fail_sys("reading the CPU lists");
	if ((unsigned)top > info.max_entries)
		return fail("this host has %d possible CPUs, the perf event array holds %u", top, info.max_entries);
	for (int cpu = 0; cpu < top; cpu++) {
		struct perf_event_attr attr;
		struct epoll_event ev;
		struct perf_ring *r;
		void *base;
		__u32 key = cpu;
		int fd;

		if (!online[cpu])
			continue;
		memset(&attr, 0, sizeof(attr));
		attr.size = sizeof(attr);
		attr.type = PERF_TYPE_SOFTWARE;
		attr.config = PERF_COUNT_SW_BPF_OUTPUT;
		attr.sample_type = PERF_SAMPLE_RAW;
		attr.sample_period = 1;
		/* No wakeup per sample: only when half the ring is filled. */
		attr.watermark = 1;
		attr.wakeup_watermark = pages * page / 2;
		fd = syscall(__NR_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);
		if (fd < 0)
			return fail_sys("perf_event_open on CPU %d", cpu);
		base = mmap(NULL, (1 + (size_t)pages) * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (base == MAP_FAILED)
			return fail_sys("mapping the perf ring of CPU %d (%u pages)", cpu, pages);
		r = &rings[ring_count++];
		r->fd = fd;
		r->meta = base;
		r->data = (unsigned char *)base + page;
		r->size = (unsigned long)pages * page;
		if (ioctl(fd, PERF_EVENT_IOC_ENABLE, 0))
			return fail_sys("enabling the perf event of CPU %d", cpu);
		if (map_update(events_fd, &key, &fd))
			return fail_sys("storing the perf event of CPU %d in hop_events", cpu);
		memset(&ev, 0, sizeof(ev));
		ev.events = EPOLLIN;
		ev.data.u32 = cpu;
		if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev))
			return fail_sys("watching the perf event of CPU %d", cpu);
	}
	return 0;
}

static int perf_consume(struct perf_ring *r)
{
	__u64 head = __atomic_load_n(&r->meta->data_head, __ATOMIC_ACQUIRE);
	__u64 tail = r->meta->data_tail;

	while (tail < head) {
		unsigned long at = tail % r->size;
		struct perf_event_header *h = (struct perf_event_header *)(r->data + at);
		unsigned char *record = (unsigned char *)h;

		if (h->size < sizeof(*h))
			return fail("a perf record of %u bytes", h->size);
		if (at + h->size > r->size) {
			/* Wraps around the ring's end: copy it out in two pieces. */
			unsigned long first = r->size - at;

			memcpy(scratch, r->data + at, first);
			memcpy(scratch + first, r->data, h->size - first);
			record = scratch;
			h = (struct perf_event_header *)record;
		}
		if (h->type == PERF_RECORD_SAMPLE) {
			__u32 size;

			memcpy(&size, record + sizeof(*h), sizeof(size));
			if (sizeof(*h) + sizeof(size) + size > h->size)
				return fail("a perf sample of %u bytes in a record of %u", size, h->size);
			if (on_record(record + sizeof(*h) + sizeof(size), size))
				return -1;
		} else if (h->type == PERF_RECORD_LOST) {
			__u64 n;

			memcpy(&n, record + sizeof(*h) + sizeof(__u64), sizeof(n));
			if (!discarding)
				lost += n;
		}
		tail += h->size;
	}
	__atomic_store_n(&r->meta->data_tail, tail, __ATOMIC_RELEASE);
	return 0;
}

static int perf_consume_all(void)
{
	for (int i = 0; i < ring_count; i++)
		if (perf_consume(&rings[i]))
			return -1;
	return 0;
}

/* --------------------------------------------------------------------------------------------- */

struct options {
	int perf;
	const char *output_pin, *counts_pin, *out_file, *state_dir;
	unsigned pages;
	unsigned max_seconds;
};

static int parse(int argc, char **argv, struct options *o)
{
	memset(o, 0, sizeof(*o));
	o->pages = DEFAULT_PERF_PAGES;
	if (argc < 5)
		return -1;
	if (!strcmp(argv[1], "perf"))
		o->perf = 1;
	else if (strcmp(argv[1], "ringbuf"))
		return -1;
	o->output_pin = argv[2];
	o->counts_pin = argv[3];
	o->out_file = argv[4];
	for (int i = 5; i < argc; i += 2) {
		char *end;
		unsigned long v;

		if (i + 1 >= argc)
			return -1;
		if (!strcmp(argv[i], "--daemon")) {
			o->state_dir = argv[i + 1];
			continue;
		}
		v = strtoul(argv[i + 1], &end, 10);
		if (*end || end == argv[i + 1])
			return -1;
		if (!strcmp(argv[i], "--pages") && v > 0 && v <= 65536 && !(v & (v - 1)))
			o->pages = v;
		else if (!strcmp(argv[i], "--max-seconds") && v > 0 && v < 86400 * 7)
			o->max_seconds = v;
		else
			return -1;
	}
	return 0;
}

/* Everything up to "ready": maps opened, rings set up, stale stamps discarded. */
static int start(const struct options *o, int *counts_fd, int *cpus, int *epoll_fd, struct ring *ring, struct hop_count *before)
{
	unsigned char possible[HOP_MAX_CPUS] = { 0 };
	int output_fd = obj_get(o->output_pin);

	if (output_fd < 0)
		return fail_sys("%s", o->output_pin);
	*counts_fd = obj_get(o->counts_pin);
	if (*counts_fd < 0)
		return fail_sys("%s", o->counts_pin);
	*cpus = cpu_list("/sys/devices/system/cpu/possible", possible);
	if (*cpus <= 0)
		return fail_sys("number of CPUs");
	out = fopen(o->out_file, "wb");
	if (!out)
		return fail_sys("%s", o->out_file);
	discarding = 1;
	if (o->perf) {
		*epoll_fd = epoll_create1(EPOLL_CLOEXEC);
		if (*epoll_fd < 0)
			return fail_sys("epoll");
		if (perf_open(output_fd, *epoll_fd, o->pages) || perf_consume_all())
			return -1;
	} else if (ring_open(output_fd, ring) || ring_consume(ring)) {
		return -1;
	}
	discarding = 0;
	return read_counts(*counts_fd, *cpus, before);
}

static int drain(const struct options *o, struct ring *ring)
{
	return o->perf ? perf_consume_all() : ring_consume(ring);
}

static int summary(char *buf, size_t size, const struct options *o, long long start_offset, long long start_width,
		   const struct hop_count *before, const struct hop_count *after)
{
	long long end_width, end_offset = clock_offset(&end_width);
	size_t n = 0;

#define PUT(...) n += snprintf(buf + n, n < size ? size - n : 0, __VA_ARGS__)
	PUT("{\"records\":%llu,\"offsetStartNs\":\"%lld\",\"offsetEndNs\":\"%lld\",\"offsetUncertaintyNs\":%lld,\"stamped\":[",
	    written, start_offset, end_offset, start_width > end_width ? start_width : end_width);
	for (int p = 0; p < HOP_POINTS; p++)
		PUT("%s%llu", p ? "," : "", (unsigned long long)(after[p].stamped - before[p].stamped));
	PUT("],\"dropped\":[");
	for (int p = 0; p < HOP_POINTS; p++)
		PUT("%s%llu", p ? "," : "", (unsigned long long)(after[p].dropped - before[p].dropped));
	PUT("],\"lost\":%llu,\"output\":\"%s\",\"expired\":%s,\"sampleEvery\":%u}\n", lost, o->perf ? "perf" : "ringbuf",
	    expired ? "true" : "false", HOP_SAMPLE_EVERY);
#undef PUT
	return n < size ? 0 : fail("summary too long");
}

/* Reads until told to stop; the summary line in `line`. */
static int read_run(const struct options *o, int counts_fd, int cpus, int epoll_fd, struct ring *ring,
		    const struct hop_count *before, long long start_offset, long long start_width, char *line, size_t size)
{
	struct timespec pause = { 0, POLL_MS * 1000000L };
	struct hop_count after[HOP_POINTS];

	if (o->max_seconds)
		alarm(o->max_seconds);
	while (!stop) {
		if (drain(o, ring))
			return -1;
		if (o->perf) {
			struct epoll_event events[64];

			/* A ring half full wakes the reader early; otherwise it drains on its own clock. */
			if (epoll_wait(epoll_fd, events, 64, POLL_MS) < 0 && errno != EINTR)
				return fail_sys("epoll_wait");
		} else {
			nanosleep(&pause, NULL);
		}
	}
	/* The last stamps: a record written before the counts were read is in a ring by now. */
	if (read_counts(counts_fd, cpus, after) || drain(o, ring))
		return -1;
	if (fclose(out)) {
		out = NULL;
		return fail_sys("%s", o->out_file);
	}
	out = NULL;
	return summary(line, size, o, start_offset, start_width, before, after);
}

static int write_file(const char *dir, const char *name, const char *text)
{
	char path[4096], tmp[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s/.%s", dir, name);
	f = fopen(tmp, "w");
	if (!f || fputs(text, f) < 0 || fclose(f))
		return -1;
	return rename(tmp, path);
}

int main(int argc, char **argv)
{
	struct hop_count before[HOP_POINTS];
	struct ring ring = { 0 };
	struct options o;
	long long start_width, start_offset;
	int counts_fd = -1, cpus = 0, epoll_fd = -1, ready_pipe[2] = { -1, -1 };
	static char line[8192];

	if (parse(argc, argv, &o)) {
		fprintf(stderr, "usage: hop-reader ringbuf RING_PIN COUNTS_PIN OUT_FILE [--daemon STATE_DIR] [--max-seconds S]\n"
				"       hop-reader perf EVENTS_PIN COUNTS_PIN OUT_FILE [--pages N] [--daemon STATE_DIR] [--max-seconds S]\n"
				"N: a power of two up to 65536; S: 1 to 604799\n");
		return 2;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGALRM, on_signal);

	if (o.state_dir) {
		char path[4096], pid[32];
		int lock;
		pid_t child;

		if (pipe(ready_pipe))
			return perror("hop-reader: pipe"), 1;
		child = fork();
		if (child < 0)
			return perror("hop-reader: fork"), 1;
		if (child > 0) {
			/* The command's own process: waits for the detached reader's first word. */
			char msg[600];
			ssize_t n;

			close(ready_pipe[1]);
			n = read(ready_pipe[0], msg, sizeof(msg) - 1);
			msg[n > 0 ? n : 0] = 0;
			if (n > 0 && !strcmp(msg, "ready\n")) {
				fputs(msg, stdout);
				return 0;
			}
			fprintf(stderr, "hop-reader: %s\n", n > 0 ? msg : "the detached reader ended before it was ready");
			return 1;
		}
		close(ready_pipe[0]);
		setsid();
		snprintf(path, sizeof(path), "%s/lock", o.state_dir);
		lock = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0644);
		if (lock < 0 || flock(lock, LOCK_EX | LOCK_NB)) {
			fail_sys("%s", path);
			if (write(ready_pipe[1], error_text, strlen(error_text)) < 0)
				return 1;
			return 1;
		}
		snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
		if (write_file(o.state_dir, "pid", pid)) {
			fail_sys("%s/pid", o.state_dir);
			if (write(ready_pipe[1], error_text, strlen(error_text)) < 0)
				return 1;
			return 1;
		}
		/* Detached: no terminal, no inherited output that would keep a remote shell waiting. */
		int devnull = open("/dev/null", O_RDWR);

		if (devnull >= 0) {
			dup2(devnull, 0);
			dup2(devnull, 1);
			dup2(devnull, 2);
		}
	} else {
		/* A reader outlives no campaign: it stops with the process that started it. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() == 1)
			stop = 1;
	}

	if (start(&o, &counts_fd, &cpus, &epoll_fd, &ring, before)) {
		if (o.state_dir) {
			write_file(o.state_dir, "error", error_text);
			if (write(ready_pipe[1], error_text, strlen(error_text)) < 0)
				return 1;
		} else {
			fprintf(stderr, "hop-reader: %s\n", error_text);
		}
		return 1;
	}
	start_offset = clock_offset(&start_width);
	if (o.state_dir) {
		if (write(ready_pipe[1], "ready\n", 6) != 6)
			return 1;
		close(ready_pipe[1]);
	} else {
		printf("ready\n");
		fflush(stdout);
	}

	if (read_run(&o, counts_fd, cpus, epoll_fd, &ring, before, start_offset, start_width, line, sizeof(line))) {
		if (o.state_dir)
			write_file(o.state_dir, "error", error_text);
		else
			fprintf(stderr, "hop-reader: %s\n", error_text);
		return 1;
	}
	if (o.state_dir)
		return write_file(o.state_dir, "summary.json", line) ? 1 : 0;
	fputs(line, stdout);
	return 0;
}

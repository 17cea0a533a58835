// The lab's stand-in for the Cilium agent's map writes: one process that holds the load balancer's
// pinned maps open and writes entries one bpf(2) call each, in the order it is given, as the agent's
// lbmap package does. Its input, one operation per line on stdin:
//
//   u <pinned map path> <key hex> <value hex>   update (BPF_ANY)
//   d <pinned map path> <key hex>               delete (a missing entry is an error)
//   c                                           end of a batch
//
// After each batch it prints "ok <operations> <nanoseconds>" (the time of the batch's bpf calls, on
// CLOCK_MONOTONIC), or "error <line of the batch> <errno> <message>" and skips the rest of that
// batch. It exits at the end of its input.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/bpf.h>

#define MAX_MAPS 16
#define MAX_BYTES 256

static struct {
	char path[4096];
	int fd;
} maps[MAX_MAPS];
static int nmaps;

static int map_fd(const char *path)
{
	for (int i = 0; i < nmaps; i++)
		if (strcmp(maps[i].path, path) == 0)
			return maps[i].fd;
	if (nmaps == MAX_MAPS || strlen(path) >= sizeof(maps[0].path))
		return -E2BIG;
	int fd = bpf_obj_get(path);
	if (fd < 0)
		return -errno;
	strcpy(maps[nmaps].path, path);
	maps[nmaps].fd = fd;
	nmaps++;
	return fd;
}

static int unhex(const char *hex, unsigned char *out)
{
	size_t n = strlen(hex);
	if (n % 2 || n / 2 > MAX_BYTES)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned int b;
		if (sscanf(hex + 2 * i, "%2x", &b) != 1)
			return -1;
		out[i] = (unsigned char)b;
	}
	return (int)(n / 2);
}

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(void)
{
	static char line[16384];
	unsigned char key[MAX_BYTES], value[MAX_BYTES];
	char op[4], path[4096], khex[2 * MAX_BYTES + 2], vhex[2 * MAX_BYTES + 2];
	long long spent = 0;
	int ops = 0, lineno = 0, failed = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof(line), stdin)) {
		lineno++;
		if (line[0] == 'c') {
			if (!failed)
				printf("ok %d %lld\n", ops, spent);
			spent = 0;
			ops = 0;
			lineno = 0;
			failed = 0;
			continue;
		}
		if (failed)
			continue;
		int fields = sscanf(line, "%3s %4095s %513s %513s", op, path, khex, vhex);
		int fd = fields >= 3 ? map_fd(path) : -EINVAL;
		int klen = fields >= 3 ? unhex(khex, key) : -1;
		int vlen = fields == 4 ? unhex(vhex, value) : 0;
		if (fd < 0 || klen < 0 || vlen < 0 || (op[0] == 'u' && fields != 4) || (op[0] == 'd' && fields != 3) || (op[0] != 'u' && op[0] != 'd')) {
			printf("error %d %d %s\n", lineno, fd < 0 ? -fd : EINVAL, fd < 0 ? "cannot open the pinned map" : "malformed operation");
			failed = 1;
			continue;
		}
		long long t0 = now_ns();
		int err = op[0] == 'u' ? bpf_map_update_elem(fd, key, value, BPF_ANY) : bpf_map_delete_elem(fd, key);
		int saved = errno;
		spent += now_ns() - t0;
		if (err) {
			printf("error %d %d %s\n", lineno, saved, strerror(saved));
			failed = 1;
			continue;
		}
		ops++;
	}
	return 0;
}

/* The connection-setup probe: many new TCP connections, one at a time, and the time of each
 * handshake (connect() to the socket becoming writable, that is SYN to SYN-ACK as the client's
 * kernel sees it). The same program runs in the local lab (client and pod namespaces) and on the
 * cloud (the client VM, and the receiver pod's network namespace on the worker); measure/
 * connection-setup.ts builds its command lines and turns its output into a D-ITG-format log.
 *
 *   connection-setup-probe listen PORT
 *       Accepts TCP connections on [::]:PORT (IPv4 peers too; 0.0.0.0:PORT where the host has no
 *       IPv6) and closes them. Prints "ready" once listening; exits 0 on SIGTERM or SIGINT.
 *   connection-setup-probe probe ADDRESS PORT RATE DURATION_MS FIRST_PORT LAST_PORT TIMEOUT_MS
 *       Opens connections to ADDRESS:PORT at RATE per second for DURATION_MS, each from its own
 *       source port (FIRST_PORT, FIRST_PORT + 1, ...: no 5-tuple is used twice), paced from the
 *       start so that a late connection does not push the later ones back, and resets each one
 *       once it is established (SO_LINGER 0), so that no TIME_WAIT holds the port. A port another
 *       socket holds (EADDRINUSE) is skipped, not counted. Prints one line per connection:
 *         ok SEQ SOURCE_PORT TX_US RX_US      (µs since the epoch; RX - TX from the monotonic clock)
 *         fail SEQ SOURCE_PORT TX_US REASON   (REASON: timeout, or the errno's name)
 *       then "done ATTEMPTED OK FAILED NEXT_PORT"; "error: ..." when the source ports run out.
 *
 * Output is buffered until the end: nothing is written while connections are timed.
 * Build: cc -O2 -o connection-setup-probe connection-setup-probe.c (C99, POSIX, Linux). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long usec(const struct timespec *t) { return (long long)t->tv_sec * 1000000LL + t->tv_nsec / 1000; }

static int whole(const char *s, long long min, long long max, long long *out) {
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *s == '\0' || *end != '\0' || v < min || v > max) return -1;
	*out = v;
	return 0;
}

/* The errno names the probe reports; the lab's judge counts failures by reason. */
static const char *errname(int e) {
	switch (e) {
	case ECONNREFUSED: return "ECONNREFUSED";
	case ECONNRESET: return "ECONNRESET";
	case EHOSTUNREACH: return "EHOSTUNREACH";
	case ENETUNREACH: return "ENETUNREACH";
	case EADDRINUSE: return "EADDRINUSE";
	case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EACCES: return "EACCES";
	case EPERM: return "EPERM";
	case EINVAL: return "EINVAL";
	case ENOBUFS: return "ENOBUFS";
	case EMFILE: return "EMFILE";
	default: return "EOTHER";
	}
}

static volatile sig_atomic_t stopping;
static void on_stop(int sig) { (void)sig; stopping = 1; }

static int listen_on(long long port) {
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	int one = 1, zero = 0;
	if (fd >= 0) {
		struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((unsigned short)port), .sin6_addr = in6addr_any};
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
		if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
			fprintf(stderr, "listen: bind [::]:%lld: %s\n", port, strerror(errno));
			return 1;
		}
	} else {
		/* A host without IPv6. */
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port), .sin_addr = {htonl(INADDR_ANY)}};
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0) {
			fprintf(stderr, "listen: socket: %s\n", strerror(errno));
			return 1;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
			fprintf(stderr, "listen: bind 0.0.0.0:%lld: %s\n", port, strerror(errno));
			return 1;
		}
	}
	if (listen(fd, 4096) != 0) {
		fprintf(stderr, "listen: %s\n", strerror(errno));
		return 1;
	}
	/* No SA_RESTART: a signal interrupts accept(). */
	struct sigaction sa = {.sa_handler = on_stop};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	printf("ready\n");
	fflush(stdout);
	while (!stopping) {
		int c = accept(fd, NULL, NULL);
		if (c >= 0) close(c);
	}
	close(fd);
	return 0;
}

struct target {
	int family;
	struct sockaddr_storage addr;
	socklen_t len;
};

static int parse_target(const char *address, long long port, struct target *t) {
	memset(t, 0, sizeof *t);
	struct sockaddr_in *v4 = (struct sockaddr_in *)&t->addr;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&t->addr;
	if (inet_pton(AF_INET, address, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((unsigned short)port);
		t->family = AF_INET;
		t->len = sizeof *v4;
		return 0;
	}
	if (inet_pton(AF_INET6, address, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((unsigned short)port);
		t->family = AF_INET6;
		t->len = sizeof *v6;
		return 0;
	}
	return -1;
}

/* One connection from source_port. Returns 1 when established, 0 when it failed (reason set),
 * -1 when the source port is taken (try the next one). */
static int connect_once(const struct target *t, int source_port, int timeout_ms, long long *tx_us, long long *rx_us, const char **reason) {
	int fd = socket(t->family, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		*reason = errname(errno);
		return 0;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct sockaddr_storage local;
	memset(&local, 0, sizeof local);
	socklen_t local_len;
	if (t->family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&local;
		a->sin_family = AF_INET;
		a->sin_port = htons((unsigned short)source_port);
		local_len = sizeof *a;
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&local;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((unsigned short)source_port);
		local_len = sizeof *a;
	}
	if (bind(fd, (struct sockaddr *)&local, local_len) != 0) {
		int e = errno;
		close(fd);
		if (e == EADDRINUSE) return -1;
		*reason = errname(e);
		return 0;
	}
	struct timespec real, mono_tx, mono_rx;
	clock_gettime(CLOCK_REALTIME, &real);
	clock_gettime(CLOCK_MONOTONIC, &mono_tx);
	*tx_us = usec(&real);
	int r = connect(fd, (struct sockaddr *)&t->addr, t->len);
	int e = r == 0 ? 0 : errno;
	if (r != 0 && e == EINPROGRESS) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int left = timeout_ms;
		for (;;) {
			int n = poll(&p, 1, left);
			if (n > 0) break;
			if (n < 0 && errno == EINTR) {
				struct timespec now;
				clock_gettime(CLOCK_MONOTONIC, &now);
				left = timeout_ms - (int)((usec(&now) - usec(&mono_tx)) / 1000);
				if (left > 0) continue;
			}
			close(fd);
			*reason = "timeout";
			return 0;
		}
		clock_gettime(CLOCK_MONOTONIC, &mono_rx);
		socklen_t len = sizeof e;
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len);
	} else {
		clock_gettime(CLOCK_MONOTONIC, &mono_rx);
	}
	if (e != 0) {
		close(fd);
		if (e == EADDRINUSE || e == EADDRNOTAVAIL) return -1;
		*reason = errname(e);
		return 0;
	}
	*rx_us = *tx_us + (usec(&mono_rx) - usec(&mono_tx));
	/* A reset instead of a FIN: the client keeps no TIME_WAIT, the port is free for the next run. */
	struct linger reset = {.l_onoff = 1, .l_linger = 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
	close(fd);
	return 1;
}

struct out {
	char *text;
	size_t len, cap;
};

__attribute__((format(printf, 2, 3))) static void say(struct out *o, const char *fmt, ...) {
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(o->text + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		o->cap = o->cap ? o->cap * 2 : 1 << 16;
		o->text = realloc(o->text, o->cap);
		if (!o->text) {
			fputs("out of memory\n", stderr);
			exit(1);
		}
	}
}

static int probe(char **argv) {
	long long port, rate, duration_ms, first, last, timeout_ms;
	if (whole(argv[1], 1, 65535, &port) || whole(argv[2], 1, 1000000, &rate) || whole(argv[3], 1, 86400000, &duration_ms) ||
	    whole(argv[4], 1, 65535, &first) || whole(argv[5], first, 65535, &last) || whole(argv[6], 1, 3600000, &timeout_ms)) {
		fputs("probe: PORT RATE DURATION_MS FIRST_PORT LAST_PORT TIMEOUT_MS must be whole numbers in range (ports 1-65535, FIRST_PORT <= LAST_PORT)\n", stderr);
		return 2;
	}
	struct target t;
	if (parse_target(argv[0], port, &t) != 0) {
		fprintf(stderr, "probe: %s is not an IPv4 or IPv6 address\n", argv[0]);
		return 2;
	}
	long long total = rate * duration_ms / 1000;
	long long interval_ns = 1000000000LL / rate;
	struct out o = {0};
	long long ok = 0, failed = 0;
	long long source = first;
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (long long seq = 1; seq <= total; seq++) {
		long long due_ns = (long long)start.tv_sec * 1000000000LL + start.tv_nsec + (seq - 1) * interval_ns;
		struct timespec due = {.tv_sec = due_ns / 1000000000LL, .tv_nsec = due_ns % 1000000000LL};
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL) == EINTR) {
		}
		long long tx = 0, rx = 0;
		const char *reason = NULL;
		int r;
		for (;;) {
			if (source > last) {
				say(&o, "done %lld %lld %lld %lld\nerror: source ports %lld-%lld exhausted\n", seq - 1, ok, failed, source, first, last);
				fwrite(o.text, 1, o.len, stdout);
				return 1;
			}
			r = connect_once(&t, (int)source, (int)timeout_ms, &tx, &rx, &reason);
			source++;
			if (r >= 0) break;
		}
		if (r == 1) {
			ok++;
			say(&o, "ok %lld %lld %lld %lld\n", seq, source - 1, tx, rx);
		} else {
			failed++;
			say(&o, "fail %lld %lld %lld %s\n", seq, source - 1, tx, reason);
		}
	}
	say(&o, "done %lld %lld %lld %lld\n", total, ok, failed, source);
	fwrite(o.text, 1, o.len, stdout);
	return 0;
}

int main(int argc, char **argv) {
	long long port;
	if (argc == 3 && strcmp(argv[1], "listen") == 0) {
		if (whole(argv[2], 1, 65535, &port)) {
			fprintf(stderr, "listen: PORT must be a whole number from 1 to 65535, not %s\n", argv[2]);
			return 2;
		}
		return listen_on(port);
	}
	if (argc == 9 && strcmp(argv[1], "probe") == 0) return probe(argv + 2);
	fputs("usage: connection-setup-probe listen PORT | probe ADDRESS PORT RATE DURATION_MS FIRST_PORT LAST_PORT TIMEOUT_MS\n", stderr);
	return 2;
}

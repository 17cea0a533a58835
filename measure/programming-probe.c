// The programming profile's probe: when does a Service change reach the packets? Two modes.
//
//   programming-probe probe ADDRESS PORT RATE FIRST_PORT LAST_PORT START_PORT EXPECT TIMEOUT_MS CONFIRM_MS MAX_S
//     Opens a TCP connection to ADDRESS:PORT every 1/RATE s, each from its own source port (bound,
//     cycling FIRST_PORT..LAST_PORT from START_PORT), and classifies each by its answer: "answered"
//     (SYN-ACK: closed at once with a reset), "refused" (RST), or "timeout" (nothing within TIMEOUT_MS:
//     closed before the kernel's first SYN retransmission, so an attempt is judged by its own first SYN
//     only). A fresh source port per attempt makes every SYN a new connection to every conntrack on the
//     path: it walks the Service rules as they are now, never an entry made before the change.
//     EXPECT (answered or refused) is the outcome after the change; the other one is the state before.
//     Prints, one line each, on CLOCK_MONOTONIC nanoseconds:
//       ready <attempts>                       the state before has held for 10 attempts in a row
//       changed <sent_ns> <answered_ns>        the first attempt with the EXPECT outcome
//       done <sent> <flaps> <timeouts> <next_port>
//                                              CONFIRM_MS after it; flaps: attempts sent after that
//                                              first one whose outcome was not EXPECT
//       gave-up <sent> <timeouts> <next_port>  MAX_S without the change, or 10 s without the state before
//       mark <ns>                              its clock when it read a line "mark" on stdin: where the
//                                              change starts, for a backend whose clock is elsewhere
//     and exits; also exits when stdin closes.
//
//   programming-probe listen PORT
//     Accepts and closes TCP connections on [::]:PORT (both families); prints "listening" when ready.
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_PENDING 65536
/* The state before the change must hold within this time, or the probe gives up. */
#define READY_TIMEOUT_NS (10LL * 1000000000LL)

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int listen_mode(int port)
{
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	int zero = 0, one = 1;
	setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any };
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 4096)) {
		fprintf(stderr, "listen on [::]:%d: %s\n", port, strerror(errno));
		return 1;
	}
	printf("listening\n");
	fflush(stdout);
	for (;;) {
		int c = accept(fd, NULL, NULL);
		if (c >= 0)
			close(c);
		else if (errno != EINTR && errno != ECONNABORTED)
			return 1;
	}
}

struct attempt {
	int fd;
	long long sent;
};

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "listen") == 0)
		return listen_mode(atoi(argv[2]));
	if (argc != 12 || strcmp(argv[1], "probe") != 0) {
		fprintf(stderr, "usage: programming-probe probe ADDRESS PORT RATE FIRST_PORT LAST_PORT START_PORT answered|refused TIMEOUT_MS CONFIRM_MS MAX_S\n"
				"       programming-probe listen PORT\n");
		return 2;
	}
	const char *address = argv[2];
	int port = atoi(argv[3]), rate = atoi(argv[4]), first = atoi(argv[5]), last = atoi(argv[6]), next = atoi(argv[7]);
	int expect_answered = strcmp(argv[8], "answered") == 0;
	long long timeout_ns = atoll(argv[9]) * 1000000LL, confirm_ns = atoll(argv[10]) * 1000000LL, max_ns = atoll(argv[11]) * 1000000000LL;
	if (rate < 1 || first < 1 || last > 65535 || first > last || next < first || next > last || port < 1 || port > 65535) {
		fprintf(stderr, "programming-probe: a rate of at least 1 and ports 1-65535 with FIRST <= START <= LAST are accepted\n");
		return 2;
	}

	struct sockaddr_storage dst = { 0 };
	socklen_t dstlen;
	int family;
	struct sockaddr_in *d4 = (struct sockaddr_in *)&dst;
	struct sockaddr_in6 *d6 = (struct sockaddr_in6 *)&dst;
	if (inet_pton(AF_INET, address, &d4->sin_addr) == 1) {
		family = AF_INET;
		d4->sin_family = AF_INET;
		d4->sin_port = htons(port);
		dstlen = sizeof(*d4);
	} else if (inet_pton(AF_INET6, address, &d6->sin6_addr) == 1) {
		family = AF_INET6;
		d6->sin6_family = AF_INET6;
		d6->sin6_port = htons(port);
		dstlen = sizeof(*d6);
	} else {
		fprintf(stderr, "programming-probe: %s is not an IP address\n", address);
		return 2;
	}

	setvbuf(stdout, NULL, _IOLBF, 0);
	int ep = epoll_create1(0);
	int timer = timerfd_create(CLOCK_MONOTONIC, 0);
	long long interval = 1000000000LL / rate;
	struct itimerspec its = { .it_interval = { interval / 1000000000LL, interval % 1000000000LL }, .it_value = { 0, 1 } };
	timerfd_settime(timer, 0, &its, NULL);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = UINT64_MAX };
	epoll_ctl(ep, EPOLL_CTL_ADD, timer, &ev);
	ev.data.u64 = UINT64_MAX - 1;
	epoll_ctl(ep, EPOLL_CTL_ADD, STDIN_FILENO, &ev);

	static struct attempt pending[MAX_PENDING];
	int npending = 0;
	long long start = now_ns(), changed_sent = -1, changed_at = -1;
	long sent = 0, flaps = 0, timeouts = 0;
	int before_streak = 0, ready = 0;

	for (;;) {
		struct epoll_event events[256];
		int n = epoll_wait(ep, events, 256, 5);
		long long t = now_ns();
		for (int i = 0; i < n; i++) {
			uint64_t tag = events[i].data.u64;
			if (tag == UINT64_MAX) {
				uint64_t expirations;
				if (read(timer, &expirations, sizeof(expirations)) != sizeof(expirations))
					continue;
				for (uint64_t k = 0; k < expirations && k < 16 && npending < MAX_PENDING; k++) {
					int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0);
					int one = 1;
					setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
					struct sockaddr_storage src = { 0 };
					((struct sockaddr_in *)&src)->sin_family = family;
					if (family == AF_INET)
						((struct sockaddr_in *)&src)->sin_port = htons(next);
					else
						((struct sockaddr_in6 *)&src)->sin6_port = htons(next);
					int bound = bind(fd, (struct sockaddr *)&src, family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
					next = next == last ? first : next + 1;
					if (bound) {
						close(fd);
						continue;
					}
					long long s = now_ns();
					if (connect(fd, (struct sockaddr *)&dst, dstlen) && errno != EINPROGRESS) {
						close(fd);
						continue;
					}
					pending[npending].fd = fd;
					pending[npending].sent = s;
					struct epoll_event cev = { .events = EPOLLOUT, .data.u64 = (uint64_t)fd };
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
					npending++;
					sent++;
				}
				continue;
			}
			if (tag == UINT64_MAX - 1) {
				char buf[256];
				ssize_t got = read(STDIN_FILENO, buf, sizeof(buf) - 1);
				if (got <= 0)
					return 0;
				buf[got] = 0;
				for (char *m = strstr(buf, "mark"); m; m = strstr(m + 4, "mark"))
					printf("mark %lld\n", t);
				continue;
			}
			int fd = (int)tag, err = 0;
			socklen_t len = sizeof(err);
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
			int answered = err == 0, refused = err == ECONNREFUSED;
			long long sent_at = 0;
			for (int j = 0; j < npending; j++) {
				if (pending[j].fd == fd) {
					sent_at = pending[j].sent;
					pending[j] = pending[--npending];
					break;
				}
			}
			struct linger reset = { 1, 0 };
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
			close(fd);
			if (!answered && !refused) {
				timeouts++;
				continue;
			}
			int is_expected = answered == expect_answered;
			if (!ready) {
				before_streak = is_expected ? 0 : before_streak + 1;
				if (before_streak >= 10) {
					ready = 1;
					printf("ready %ld\n", sent);
				}
				continue;
			}
			if (changed_at < 0) {
				if (is_expected) {
					changed_sent = sent_at;
					changed_at = t;
					printf("changed %lld %lld\n", changed_sent, changed_at);
				}
			} else if (!is_expected && sent_at > changed_sent) {
				flaps++;
			}
		}
		// Attempts without an answer: closed before the first SYN retransmission.
		for (int j = 0; j < npending;) {
			if (t - pending[j].sent > timeout_ns) {
				close(pending[j].fd);
				pending[j] = pending[--npending];
				timeouts++;
			} else {
				j++;
			}
		}
		if (changed_at >= 0 && t - changed_at > confirm_ns) {
			printf("done %ld %ld %ld %d\n", sent, flaps, timeouts, next);
			return 0;
		}
		if (t - start > max_ns || (!ready && t - start > READY_TIMEOUT_NS)) {
			printf("gave-up %ld %ld %d\n", sent, timeouts, next);
			return 0;
		}
	}
}

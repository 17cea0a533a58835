// Loads the socket load balancer (sock-lb.c) and attaches its hooks to one cgroup v2 directory, as
// the Cilium agent attaches bpf_sock.o (Cilium at the node's root cgroup; the lab at its client
// pod's cgroup only, since other programs on this host share the root).
//
//   sock-lb-attach OBJECT PIN_ROOT CGROUP LINK_DIR
//
// Maps the object declares pinned by name are looked up in PIN_ROOT first: the tc load balancer's
// service, backend and reverse-NAT maps (tc pins them in <bpffs>/tc/globals), so both datapaths read
// one set of maps; the socket program's own maps are pinned there too. Each hook's link is pinned as
// LINK_DIR/<program name>: the attachment lasts after this program exits and ends when its pin is
// removed (or the bpffs unmounted, or the cgroup removed). Prints "ok <hooks>", or an error and
// exits 1 with nothing attached.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/libbpf.h>

#define MAX_HOOKS 16

int main(int argc, char **argv)
{
	struct bpf_link *links[MAX_HOOKS];
	char paths[MAX_HOOKS][4096];
	struct bpf_program *prog;
	struct bpf_object *obj;
	int n = 0, cgroup, err = 0;

	if (argc != 5) {
		fprintf(stderr, "usage: %s OBJECT PIN_ROOT CGROUP LINK_DIR\n", argv[0]);
		return 2;
	}
	LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = argv[2]);
	obj = bpf_object__open_file(argv[1], &opts);
	if (!obj) {
		fprintf(stderr, "error: open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	err = bpf_object__load(obj);
	if (err) {
		fprintf(stderr, "error: load %s: %s\n", argv[1], strerror(-err));
		bpf_object__close(obj);
		return 1;
	}
	cgroup = open(argv[3], O_RDONLY | O_DIRECTORY);
	if (cgroup < 0) {
		fprintf(stderr, "error: cgroup %s: %s\n", argv[3], strerror(errno));
		bpf_object__close(obj);
		return 1;
	}
	bpf_object__for_each_program(prog, obj) {
		if (n == MAX_HOOKS) {
			err = -E2BIG;
			fprintf(stderr, "error: more than %d programs\n", MAX_HOOKS);
			break;
		}
		links[n] = bpf_program__attach_cgroup(prog, cgroup);
		if (!links[n]) {
			err = -errno;
			fprintf(stderr, "error: attach %s to %s: %s\n", bpf_program__name(prog), argv[3], strerror(errno));
			break;
		}
		snprintf(paths[n], sizeof(paths[n]), "%s/%s", argv[4], bpf_program__name(prog));
		err = bpf_link__pin(links[n], paths[n]);
		if (err) {
			fprintf(stderr, "error: pin %s: %s\n", paths[n], strerror(-err));
			bpf_link__destroy(links[n]);
			break;
		}
		n++;
	}
	if (err) {
		/* Nothing stays attached: unpinning drops the last reference of each link. */
		for (int i = 0; i < n; i++) {
			bpf_link__unpin(links[i]);
			bpf_link__destroy(links[i]);
		}
	} else {
		for (int i = 0; i < n; i++) {
			bpf_link__disconnect(links[i]);
			bpf_link__destroy(links[i]);
		}
		printf("ok %d\n", n);
	}
	close(cgroup);
	bpf_object__close(obj);
	return err ? 1 : 0;
}

// The jumps into KUBE-* chains from any other chain of the legacy iptables tables of one family, read
// from the kernel's own table blobs (IPT_SO_GET_INFO / IPT_SO_GET_ENTRIES, the calls iptables-legacy-save
// makes), in the network namespace it runs in. iptables-legacy-save prints every rule of a table
// whose KUBE-* chains hold kube-proxy's 66000 rules at 10000 Services, and libiptc parses them all
// first: a third of a second per family. The question "which rules put KUBE-* chains on the packet
// path" needs one pass over the blob and no text.
//
//   xt-jumps ipv4|ipv6
//
// Prints one line per such rule: TABLE CHAIN -j|-g TARGET (a jump, or a goto). Reads the tables the
// namespace has (/proc/net/ip_tables_names, ip6_tables_names): asking for another would load it.
// Exit 0 (nothing printed: no such rule), 1 on an error, named on stderr.
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netfilter_ipv6/ip6_tables.h>

#define PREFIX "KUBE-"
#define MAX_CHAINS_GUESS 1024

static const char *const HOOK_NAMES[NF_INET_NUMHOOKS] = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"};

/** Where each chain starts in the blob (the offset of its first rule) and its name. */
struct chain_start {
  unsigned int offset;
  const char *name;
};

struct chains {
  struct chain_start *items;
  size_t count, capacity;
};

static void add_chain(struct chains *c, unsigned int offset, const char *name) {
  if (c->count == c->capacity) {
    c->capacity = c->capacity ? 2 * c->capacity : MAX_CHAINS_GUESS;
    c->items = realloc(c->items, c->capacity * sizeof *c->items);
    if (!c->items) {
      perror("xt-jumps: realloc");
      exit(1);
    }
  }
  c->items[c->count++] = (struct chain_start){offset, name};
}

/** Chains are added in blob order: a binary search by offset. */
static const char *chain_at(const struct chains *c, unsigned int offset) {
  size_t lo = 0, hi = c->count;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (c->items[mid].offset == offset) return c->items[mid].name;
    if (c->items[mid].offset < offset) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}

/** A jump found in the blob: the chain it is in, the offset it goes to, and whether it is a goto. */
struct jump {
  const char *chain;
  unsigned int to;
  int is_goto;
};

// One scan per family: the entry types differ (ipt_entry, ip6t_entry) and so do their goto flags.
#define SCAN_TABLE(FN, ENTRY, IPFIELD, GOTO_FLAG)                                                                     \
  static void FN(const char *table, const unsigned char *blob, unsigned int size, const unsigned int *hook_entry,    \
                 unsigned int valid_hooks) {                                                                          \
    struct chains chains = {0};                                                                                       \
    struct jump *jumps = NULL;                                                                                        \
    size_t njumps = 0, jcap = 0;                                                                                      \
    const char *current = NULL;                                                                                       \
    for (unsigned int off = 0; off < size;) {                                                                         \
      const ENTRY *e = (const ENTRY *)(blob + off);                                                                   \
      if (e->next_offset < sizeof(ENTRY) || off + e->next_offset > size) {                                            \
        fprintf(stderr, "xt-jumps: table %s: a malformed entry at offset %u\n", table, off);                          \
        exit(1);                                                                                                      \
      }                                                                                                               \
      for (int h = 0; h < NF_INET_NUMHOOKS; h++) {                                                                    \
        if ((valid_hooks & (1u << h)) && hook_entry[h] == off) {                                                      \
          current = HOOK_NAMES[h];                                                                                    \
          add_chain(&chains, off, current);                                                                           \
        }                                                                                                             \
      }                                                                                                               \
      const struct xt_entry_target *t = (const struct xt_entry_target *)((const unsigned char *)e + e->target_offset); \
      if (strcmp(t->u.user.name, XT_ERROR_TARGET) == 0) {                                                             \
        /* A user chain's head: its rules start at the next entry. The table's last entry is an ERROR too. */       \
        const char *name = ((const struct xt_error_target *)t)->errorname;                                            \
        if (off + e->next_offset < size) {                                                                            \
          current = name;                                                                                             \
          add_chain(&chains, off + e->next_offset, name);                                                             \
        }                                                                                                             \
      } else if (t->u.user.name[0] == '\0' && current) {                                                              \
        int verdict = ((const struct xt_standard_target *)t)->verdict;                                                \
        /* A verdict >= 0 is an offset: a jump, unless it only falls through to the next rule. */                   \
        if (verdict >= 0 && (unsigned int)verdict != off + e->next_offset) {                                          \
          if (njumps == jcap) {                                                                                       \
            jcap = jcap ? 2 * jcap : 64;                                                                              \
            jumps = realloc(jumps, jcap * sizeof *jumps);                                                             \
            if (!jumps) {                                                                                             \
              perror("xt-jumps: realloc");                                                                            \
              exit(1);                                                                                                \
            }                                                                                                         \
          }                                                                                                           \
          jumps[njumps++] = (struct jump){current, (unsigned int)verdict, (e->IPFIELD.flags & GOTO_FLAG) != 0};       \
        }                                                                                                             \
      }                                                                                                               \
      off += e->next_offset;                                                                                          \
    }                                                                                                                 \
    for (size_t i = 0; i < njumps; i++) {                                                                             \
      const char *to = chain_at(&chains, jumps[i].to);                                                                \
      if (!to) {                                                                                                      \
        fprintf(stderr, "xt-jumps: table %s: a jump from %s to offset %u, where no chain starts\n", table,            \
                jumps[i].chain, jumps[i].to);                                                                         \
        exit(1);                                                                                                      \
      }                                                                                                               \
      if (strncmp(jumps[i].chain, PREFIX, strlen(PREFIX)) != 0 && strncmp(to, PREFIX, strlen(PREFIX)) == 0)           \
        printf("%s %s %s %s\n", table, jumps[i].chain, jumps[i].is_goto ? "-g" : "-j", to);                           \
    }                                                                                                                 \
    free(jumps);                                                                                                      \
    free(chains.items);                                                                                               \
  }

SCAN_TABLE(scan_ipv4, struct ipt_entry, ip, IPT_F_GOTO)
SCAN_TABLE(scan_ipv6, struct ip6t_entry, ipv6, IP6T_F_GOTO)

// GET_INFO, then GET_ENTRIES of the size it gave; a table that changed in between answers EAGAIN.
#define READ_TABLE(FN, SCAN, INFO, ENTRIES, LEVEL, GET_INFO, GET_ENTRIES)                                             \
  static void FN(int fd, const char *table) {                                                                         \
    for (int attempt = 0; attempt < 10; attempt++) {                                                                  \
      INFO info;                                                                                                      \
      memset(&info, 0, sizeof info);                                                                                  \
      strncpy(info.name, table, sizeof info.name - 1);                                                                \
      socklen_t len = sizeof info;                                                                                    \
      if (getsockopt(fd, LEVEL, GET_INFO, &info, &len) != 0) {                                                        \
        fprintf(stderr, "xt-jumps: reading table %s: %s\n", table, strerror(errno));                                  \
        exit(1);                                                                                                      \
      }                                                                                                               \
      socklen_t total = sizeof(ENTRIES) + info.size;                                                                  \
      ENTRIES *entries = calloc(1, total);                                                                            \
      if (!entries) {                                                                                                 \
        perror("xt-jumps: calloc");                                                                                   \
        exit(1);                                                                                                      \
      }                                                                                                               \
      strncpy(entries->name, table, sizeof entries->name - 1);                                                        \
      entries->size = info.size;                                                                                      \
      if (getsockopt(fd, LEVEL, GET_ENTRIES, entries, &total) == 0) {                                                 \
        SCAN(table, (const unsigned char *)entries->entrytable, info.size, info.hook_entry, info.valid_hooks);        \
        free(entries);                                                                                                \
        return;                                                                                                       \
      }                                                                                                               \
      int error = errno;                                                                                              \
      free(entries);                                                                                                  \
      if (error != EAGAIN) {                                                                                          \
        fprintf(stderr, "xt-jumps: reading the rules of table %s: %s\n", table, strerror(error));                     \
        exit(1);                                                                                                      \
      }                                                                                                               \
    }                                                                                                                 \
    fprintf(stderr, "xt-jumps: table %s kept changing while it was read\n", table);                                   \
    exit(1);                                                                                                          \
  }

READ_TABLE(read_ipv4, scan_ipv4, struct ipt_getinfo, struct ipt_get_entries, IPPROTO_IP, IPT_SO_GET_INFO, IPT_SO_GET_ENTRIES)
READ_TABLE(read_ipv6, scan_ipv6, struct ip6t_getinfo, struct ip6t_get_entries, IPPROTO_IPV6, IP6T_SO_GET_INFO, IP6T_SO_GET_ENTRIES)

int main(int argc, char **argv) {
  int ipv6 = argc == 2 && strcmp(argv[1], "ipv6") == 0;
  if (argc != 2 || (!ipv6 && strcmp(argv[1], "ipv4") != 0)) {
    fprintf(stderr, "usage: xt-jumps ipv4|ipv6\n");
    return 1;
  }
  FILE *names = fopen(ipv6 ? "/proc/net/ip6_tables_names" : "/proc/net/ip_tables_names", "r");
  // No legacy table in this namespace (or no ip_tables module at all): nothing jumps anywhere.
  if (!names) return 0;
  int fd = socket(ipv6 ? AF_INET6 : AF_INET, SOCK_RAW, IPPROTO_RAW);
  if (fd < 0) {
    perror("xt-jumps: socket");
    return 1;
  }
  char table[XT_TABLE_MAXNAMELEN + 2];
  while (fgets(table, sizeof table, names)) {
    table[strcspn(table, "\n")] = '\0';
    if (table[0] == '\0') continue;
    if (ipv6) read_ipv6(fd, table);
    else read_ipv4(fd, table);
  }
  fclose(names);
  close(fd);
  return 0;
}

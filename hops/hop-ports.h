/* The ports whose packets and connects the hop programs stamp (hop-probe.c, hop-connect.c), passed
 * by the loader: the receiver's data port (NodePort = Service port = pod port), -DHOP_DATA_PORT=, and
 * the data port of the receiver pod's second ITGRecv, -DHOP_DATA_PORT_2=, when it has one. */
#ifndef HOPS_HOP_PORTS_H
#define HOPS_HOP_PORTS_H

#include "hop-bpf.h"

#ifndef HOP_DATA_PORT
#error "HOP_DATA_PORT must be defined (-DHOP_DATA_PORT=<port>)"
#endif
#ifndef HOP_DATA_PORT_2
#define HOP_DATA_PORT_2 HOP_DATA_PORT
#endif

/* A port in network order is one of the data ports. */
#define hop_data_port(port) ((port) == hop_htons(HOP_DATA_PORT) || (port) == hop_htons(HOP_DATA_PORT_2))

#endif

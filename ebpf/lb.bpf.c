// SPDX-License-Identifier: GPL-2.0 OR MIT
// betwixt's sockmap fast path: the kernel moves bytes between the two
// sockets of a proxied connection (see ebpf/README.md).
//
// Maps, all keyed by socket cookie (SO_COOKIE == bpf_get_socket_cookie):
// - socks: every gated socket; only the redirect target, no program.
// - gate:  the same sockets, inserted after `socks`; lb_verdict runs here.
// - peers: cookie -> the other socket's cookie and byte counters.
// - stats: per-CPU counters (redirected skbs, skbs passed up, failed
//   redirects, empty skbs dropped).
//
// Build: clang -O2 -g -target bpfel -c lb.bpf.c (build.rs does it).
#include <linux/bpf.h>

/* The few pieces of libbpf's bpf_helpers.h used here, so that the build
 * needs only clang and the kernel's uapi headers (linux-libc-dev). */
#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
static void *(*bpf_map_lookup_elem)(void *map, const void *key) =
	(void *)BPF_FUNC_map_lookup_elem;
static __u64 (*bpf_get_socket_cookie)(void *ctx) =
	(void *)BPF_FUNC_get_socket_cookie;
static long (*bpf_sk_redirect_hash)(struct __sk_buff *skb, void *map,
				    void *key, __u64 flags) =
	(void *)BPF_FUNC_sk_redirect_hash;

struct pair {
	__u64 peer;     /* cookie of the socket bytes are redirected to */
	__u64 bytes;    /* bytes redirected from this socket's input */
	__u64 passed;   /* skbs handed to userspace instead (failed redirects) */
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u32);
} socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u32);
} gate SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct pair);
} peers SEC(".maps");

enum { ST_REDIRECTED, ST_PASSED, ST_FAILED, ST_EMPTY, ST_MAX };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ST_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void count(__u32 what)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &what);
	if (v)
		*v += 1;
}

SEC("sk_skb/stream_verdict")
int lb_verdict(struct __sk_buff *skb)
{
	__u64 me = bpf_get_socket_cookie(skb);
	struct pair *p = bpf_map_lookup_elem(&peers, &me);
	__u32 len = skb->len;

	/* A bare FIN carries no byte: TCP has already marked the socket
	 * as read-shut (userspace sees EOF) and acked it. Drop the empty
	 * skb: the psock worker treats a 0-byte skb as a broken pipe, both
	 * when it is redirected (on the peer) and when it is passed while
	 * this socket's own backlog is not empty (on this socket). */
	if (len == 0) {
		count(ST_EMPTY);
		return SK_DROP;
	}
	if (!p) {
		count(ST_PASSED);
		return SK_PASS;
	}
	__u64 peer = p->peer;
	if (bpf_sk_redirect_hash(skb, &socks, &peer, 0) != SK_PASS) {
		/* Never drop: these bytes are acked already. */
		__sync_fetch_and_add(&p->passed, 1);
		count(ST_FAILED);
		return SK_PASS;
	}
	__sync_fetch_and_add(&p->bytes, len);
	count(ST_REDIRECTED);
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";

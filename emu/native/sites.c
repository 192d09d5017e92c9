/*
 * Block hooks on single addresses (call sites), dispatched from one Unicorn block hook in C
 * (emu/hooks.py drives it).
 *
 * Why: Unicorn keeps its block hooks in one list and, at the start of every block run,
 * walks the whole list comparing each hook's range with the block's address.  The call
 * audit puts a hook on every call site (~170 in the kernel, more with a module), so every
 * block of guest code paid for ~170 compares through a linked list: guest code ran ~90x
 * slower (5 ms of kernel workload became 477 ms).  Here the addresses sit in a sorted array
 * searched by bisection, and only a block that starts at one of them calls into the host.
 *
 * This hook must be added after the instruction counter's (emu/clock.py): when that one
 * stops a run before a block, Unicorn skips the block's later hooks, so a site is never
 * reported for a block that did not run.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef void (*site_fn)(uint64_t addr, uint32_t size);

struct sites {
	uint64_t *addrs;	/* sorted, distinct */
	uint64_t count;
	uint64_t capacity;
	site_fn fn;
};

struct sites *sites_new(site_fn fn)
{
	struct sites *s = calloc(1, sizeof(*s));

	if (s)
		s->fn = fn;
	return s;
}

void sites_free(struct sites *s)
{
	if (s) {
		free(s->addrs);
		free(s);
	}
}

/* The index of the first address >= addr. */
static uint64_t lower_bound(const struct sites *s, uint64_t addr)
{
	uint64_t lo = 0, hi = s->count;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (s->addrs[mid] < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Watch addr; 0 on success (or if already watched), -1 with no memory for it. */
int sites_add(struct sites *s, uint64_t addr)
{
	uint64_t i = lower_bound(s, addr);

	if (i < s->count && s->addrs[i] == addr)
		return 0;
	if (s->count == s->capacity) {
		uint64_t capacity = s->capacity ? 2 * s->capacity : 256;
		uint64_t *addrs = realloc(s->addrs, capacity * sizeof(*addrs));

		if (!addrs)
			return -1;
		s->addrs = addrs;
		s->capacity = capacity;
	}
	memmove(s->addrs + i + 1, s->addrs + i, (s->count - i) * sizeof(*s->addrs));
	s->addrs[i] = addr;
	s->count++;
	return 0;
}

void sites_remove(struct sites *s, uint64_t addr)
{
	uint64_t i = lower_bound(s, addr);

	if (i < s->count && s->addrs[i] == addr) {
		memmove(s->addrs + i, s->addrs + i + 1, (s->count - i - 1) * sizeof(*s->addrs));
		s->count--;
	}
}

/* The UC_HOOK_BLOCK callback; user_data is the struct sites. */
void sites_block(void *uc, uint64_t addr, uint32_t size, void *user_data)
{
	struct sites *s = user_data;
	uint64_t i;

	(void)uc;
	if (!s->count || addr < s->addrs[0] || addr > s->addrs[s->count - 1])
		return;
	i = lower_bound(s, addr);
	if (s->addrs[i] == addr)
		s->fn(addr, size);
}

/*
 * Instruction counting for the emulated CPUs' clocks (emu/clock.py drives it).
 *
 * A Unicorn UC_HOOK_BLOCK callback in C: at the start of each translated block it adds the
 * block's instruction count to the running CPU's clock, which lives in guest memory (the
 * per-CPU area is host memory mapped into the guest), so guest code reading its clock sees
 * the instructions run so far.  Unicorn's own instruction count puts a helper call on
 * every instruction; a block hook costs one call a block, and only in C is that cheap.
 *
 * A block's count is decoded once by the host (a callback into Python, with capstone) and
 * cached by (address, size): the same bytes at the same place always hold the same number
 * of instructions, and ftrace's patches keep that true (a 5-byte call and a 5-byte nop are
 * one instruction each; a block ending at an int3 has a size no other block there had).
 * Anything that may put other code at an address (a module's text mapped or unmapped)
 * forgets the blocks there.
 */
#include <stdint.h>
#include <stdlib.h>

typedef uint32_t (*decode_fn)(uint64_t addr, uint32_t size);
typedef int (*emu_stop_fn)(void *uc);	/* Unicorn's uc_emu_stop */

struct slot {
	uint64_t addr;
	uint32_t size;
	uint32_t insns;
	uint64_t gen;		/* valid while equal to the counter's generation */
};

struct icount {
	struct slot *slots;
	uint64_t mask;		/* number of slots - 1 (a power of two) */
	uint64_t used;
	uint64_t gen;
	decode_fn decode;
	emu_stop_fn emu_stop;
	uint64_t *clock;	/* the running CPU's clock, or NULL when none runs */
	uint64_t ran;		/* instructions counted since icount_start() */
	uint64_t limit;		/* stop the run once ran reaches this */
	int stopped;		/* the run was stopped for reaching its limit */
	uint64_t last_addr;	/* the block counted last, for icount_settle() */
	uint32_t last_size;
};

static uint64_t hash(uint64_t addr, uint32_t size)
{
	uint64_t h = addr * 0x9E3779B97F4A7C15ull ^ (uint64_t)size * 0xC2B2AE3D27D4EB4Full;
	return h ^ (h >> 29);
}

struct icount *icount_new(decode_fn decode, emu_stop_fn emu_stop, uint32_t log2_slots)
{
	struct icount *ic = calloc(1, sizeof(*ic));

	if (!ic)
		return NULL;
	ic->mask = (1ull << log2_slots) - 1;
	ic->slots = calloc(ic->mask + 1, sizeof(*ic->slots));
	if (!ic->slots) {
		free(ic);
		return NULL;
	}
	ic->gen = 1;
	ic->decode = decode;
	ic->emu_stop = emu_stop;
	return ic;
}

void icount_free(struct icount *ic)
{
	if (ic) {
		free(ic->slots);
		free(ic);
	}
}

static void icount_flush(struct icount *ic)
{
	ic->gen++;
	ic->used = 0;
}

/*
 * A CPU starts running: count into its clock, and stop the run at the start of the first
 * block after it has run limit instructions.  A run stopped so resumes exactly where it stopped:
 * the stop is asked for before the block's code hooks run, and Unicorn skips them then.
 */
void icount_start(struct icount *ic, uint64_t *clock, uint64_t limit)
{
	ic->clock = clock;
	ic->last_size = 0;
	ic->ran = 0;
	ic->limit = limit;
	ic->stopped = 0;
}

uint64_t icount_ran(struct icount *ic) { return ic->ran; }
int icount_stopped(struct icount *ic) { return ic->stopped; }


/*
 * Rehash into a table of `factor` times the size, keeping the valid entries outside
 * [drop_lo, drop_hi): growing, and forgetting a range (both rare: no tombstones needed).
 */
static void rehash(struct icount *ic, uint64_t factor, uint64_t drop_lo, uint64_t drop_hi)
{
	uint64_t old_mask = ic->mask, i;
	struct slot *old = ic->slots, *slots = calloc(factor * (old_mask + 1), sizeof(*slots));

	if (!slots) {
		icount_flush(ic);	/* no memory for more: start again, decoding anew */
		return;
	}
	ic->slots = slots;
	ic->mask = factor * (old_mask + 1) - 1;
	ic->used = 0;
	for (i = 0; i <= old_mask; i++) {
		uint64_t j;

		if (old[i].gen != ic->gen || (old[i].addr >= drop_lo && old[i].addr < drop_hi))
			continue;
		for (j = hash(old[i].addr, old[i].size) & ic->mask; slots[j].gen == ic->gen; j = (j + 1) & ic->mask)
			;
		slots[j] = old[i];
		ic->used++;
	}
	free(old);
}

static void grow(struct icount *ic)
{
	rehash(ic, 2, 0, 0);
}

/* Forget the blocks starting in [lo, hi): other code may be there now (a module's text). */
void icount_forget(struct icount *ic, uint64_t lo, uint64_t hi)
{
	rehash(ic, 1, lo, hi);
}

static uint32_t lookup(struct icount *ic, uint64_t addr, uint32_t size)
{
	uint64_t j;

	for (j = hash(addr, size) & ic->mask; ic->slots[j].gen == ic->gen; j = (j + 1) & ic->mask)
		if (ic->slots[j].addr == addr && ic->slots[j].size == size)
			return ic->slots[j].insns;
	ic->slots[j].addr = addr;
	ic->slots[j].size = size;
	ic->slots[j].insns = ic->decode(addr, size);
	ic->slots[j].gen = ic->gen;
	if (++ic->used * 2 > ic->mask) {
		uint32_t insns = ic->slots[j].insns;

		grow(ic);
		return insns;
	}
	return ic->slots[j].insns;
}

/* The UC_HOOK_BLOCK callback; user_data is the struct icount. */
void icount_block(void *uc, uint64_t addr, uint32_t size, void *user_data)
{
	struct icount *ic = user_data;

	uint32_t insns;

	if (!ic->clock)
		return;
	ic->last_addr = addr;
	ic->last_size = size;
	insns = lookup(ic, addr, size);
	/*
	 * The limit was reached by the blocks before this one: stop before it runs (it is
	 * counted all the same, and given back by icount_settle() if it did not run), so
	 * every run makes progress, however small its limit.
	 */
	if (ic->ran >= ic->limit && !ic->stopped) {
		ic->stopped = 1;
		ic->emu_stop(uc);
	}
	*ic->clock += insns;
	ic->ran += insns;
}

/*
 * The run stopped at rip.  If that is inside the block counted last, the instructions
 * from rip to the block's end were counted but not run: take them back, since the run
 * that resumes at rip counts them again.
 */
void icount_settle(struct icount *ic, uint64_t rip)
{
	uint64_t end = ic->last_addr + ic->last_size;

	if (ic->clock && ic->last_size && rip >= ic->last_addr && rip < end) {
		uint32_t unrun = lookup(ic, rip, (uint32_t)(end - rip));

		*ic->clock -= unrun;
		ic->ran -= unrun;
	}
	ic->last_size = 0;
	ic->clock = 0;
}

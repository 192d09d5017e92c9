/*
 * joined_main.c - half of a module built from two objects joined with
 * ld -r, as kbuild links a multi-file module; calls into joined_util.c.
 *
 * Built by scripts/build_guest.py, from guest/:
 *
 *	gcc -O2 -pg -mfentry -mrecord-mcount -mcmodel=kernel -ffreestanding
 *		-fno-pic -fno-stack-protector -mno-red-zone
 *		-fno-asynchronous-unwind-tables -mno-sse -mno-mmx -mno-80387
 *		-fno-optimize-sibling-calls
 *		-fno-common -Wall -Iinclude -c modules/joined_main.c
 *		-o joined_main.o
 *	(joined_util.o likewise, from modules/joined_util.c)
 *	ld -r --build-id=none -o modules/joined.ko joined_main.o joined_util.o
 *
 * Callable by the host: joined_entry(x) = 6 * x + 100.
 */
#include <kernel.h>

static const char __modname[] __used __attribute__((section(".modinfo"))) =
	"name=joined";

/* joined_util.c */
long joined_util_scale(long x);

static __noinline __noclone long joined_main_bias(void)
{
	return 100;
}

__noinline __noclone long joined_entry(long x)
{
	return joined_util_scale(x) + joined_main_bias();
}

int init_module(void)
{
	long v = joined_entry(7);

	pr_info("joined: entry(7) = %ld\n", v);
	return v == 142 ? 0 : -EINVAL;
}

void cleanup_module(void)
{
	pr_info("joined: unloaded\n");
}

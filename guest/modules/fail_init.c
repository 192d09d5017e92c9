/*
 * fail_init.c - a module whose init fails, to exercise the loader's
 * unwinding (GOING, ftrace_release_mod, free) after its records exist.
 *
 * Built by scripts/build_guest.py, from guest/:
 *
 *	gcc -O2 -pg -mfentry -mrecord-mcount -mcmodel=kernel -ffreestanding
 *		-fno-pic -fno-stack-protector -mno-red-zone
 *		-fno-asynchronous-unwind-tables -mno-sse -mno-mmx -mno-80387
 *		-fno-optimize-sibling-calls
 *		-fno-common -Wall -Iinclude -c modules/fail_init.c
 *		-o modules/fail_init.ko
 */
#include <kernel.h>

static const char __modname[] __used __attribute__((section(".modinfo"))) =
	"name=fail_init";

/* Looks for hardware that is never there: always -ENODEV (-19). */
__noinline __noclone long fail_init_probe(void)
{
	return -ENODEV;
}

int init_module(void)
{
	pr_err("fail_init: refusing to load\n");
	return fail_init_probe();
}

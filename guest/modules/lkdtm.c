/*
 * lkdtm.c - the Linux Kernel Dump Test Module's idea, small: functions that
 * crash the kernel in the ways an oops report must describe.  Each is
 * traceable, so a fault happens in traced code.
 *
 * Built by scripts/build_guest.py, from guest/:
 *
 *	gcc -O2 -pg -mfentry -mrecord-mcount -mcmodel=kernel -ffreestanding
 *		-fno-pic -fno-stack-protector -mno-red-zone
 *		-fno-asynchronous-unwind-tables -mno-sse -mno-mmx -mno-80387
 *		-fno-optimize-sibling-calls -fno-common -Wall -Iinclude
 *		-c modules/lkdtm.c -o modules/lkdtm.ko
 */
#include <kernel.h>

static const char __modname[] __used __attribute__((section(".modinfo"))) =
	"name=lkdtm";

static const unsigned long lkdtm_rodata = 0x1234;

/* Reads through a NULL pointer plus an offset, like a bad struct member access. */
__noinline __noclone long lkdtm_NULL_DEREF(long offset)
{
	volatile long *p = (volatile long *)offset;

	return *p;
}

/* Writes to a read-only constant: the page is not writable. */
__noinline __noclone long lkdtm_WRITE_RO(long value)
{
	*(volatile unsigned long *)&lkdtm_rodata = value;
	return 0;
}

/* Executes ud2, as BUG() does. */
__noinline __noclone long lkdtm_UNDEFINED(void)
{
	__builtin_trap();
}

/* Recurses with a large frame until the stack runs into its guard page. */
__noinline __noclone long lkdtm_EXHAUST_STACK(long depth)
{
	volatile char frame[1024];

	frame[0] = (char)depth;
	frame[sizeof(frame) - 1] = (char)depth;
	return lkdtm_EXHAUST_STACK(depth + 1) + frame[0] + frame[sizeof(frame) - 1];
}

/* A well-behaved function, to show the CPU goes on after an oops. */
__noinline __noclone long lkdtm_OK(long x)
{
	return x + 1;
}

int init_module(void)
{
	printk("lkdtm: ready\n");
	return 0;
}

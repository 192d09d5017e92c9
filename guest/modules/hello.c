/*
 * hello.c - the smallest module: a line in dmesg on load and on unload.
 *
 * Built by scripts/build_guest.py, from guest/:
 *
 *	gcc -O2 -pg -mfentry -mrecord-mcount -mcmodel=kernel -ffreestanding
 *		-fno-pic -fno-stack-protector -mno-red-zone
 *		-fno-asynchronous-unwind-tables -mno-sse -mno-mmx -mno-80387
 *		-fno-optimize-sibling-calls
 *		-fno-common -Wall -Iinclude -c modules/hello.c
 *		-o modules/hello.ko
 */
#include <kernel.h>

static const char __modname[] __used __attribute__((section(".modinfo"))) =
	"name=hello";

/* Callable by the host: returns 42. */
long hello_answer(void)
{
	return 42;
}

int init_module(void)
{
	pr_info("hello: Hello, world\n");
	return 0;
}

void cleanup_module(void)
{
	pr_info("hello: Goodbye, world\n");
}

/*
 * race_mod.c - the module of the race: insmod'ed on one CPU while the other
 * turns function tracing on, with functions of its own for ftrace to patch.
 *
 * Built by scripts/build_guest.py, from guest/:
 *
 *	gcc -O2 -pg -mfentry -mrecord-mcount -mcmodel=kernel -ffreestanding
 *		-fno-pic -fno-stack-protector -mno-red-zone
 *		-fno-asynchronous-unwind-tables -mno-sse -mno-mmx -mno-80387
 *		-fno-optimize-sibling-calls
 *		-fno-common -Wall -Iinclude -c modules/race_mod.c
 *		-o modules/race_mod.ko
 *
 * What the host may call and what it returns:
 *	race_mod_compute(x)	3 * x + 7
 *	race_mod_work(n)	the sum of race_mod_compute(i) for 0 <= i < n,
 *				that is n * (3 * n + 11) / 2; 0 when n <= 0
 *	race_mod_via_kernel(x)	race_mod_compute(x), called back through the
 *				kernel's kernel_call_fn(): 3 * x + 7
 *	race_mod_checksum(buf, len)  the sum of (k + 1) * buf[k] over the
 *				bytes, as unsigned chars
 */
#include <kernel.h>

static const char __modname[] __used __attribute__((section(".modinfo"))) =
	"name=race_mod";

#define RACE_MOD_FILE "/tmp/race_mod"

static const char race_mod_msg[] = "race_mod was here\n";

__noinline __noclone long race_mod_compute(long x)
{
	return 3 * x + 7;
}

__noinline __noclone long race_mod_work(long n)
{
	long i, sum = 0;

	for (i = 0; i < n; i++)
		sum += race_mod_compute(i);
	return sum;
}

/* The function-pointer round trip: module -> kernel -> module. */
__noinline __noclone long race_mod_via_kernel(long x)
{
	return kernel_call_fn(race_mod_compute, x);
}

__noinline __noclone long race_mod_checksum(const char *buf, long len)
{
	long k, sum = 0;

	for (k = 0; k < len; k++)
		sum += (k + 1) * (u8)buf[k];
	return sum;
}

static __noinline __noclone long race_mod_open(void)
{
	return do_sys_open(RACE_MOD_FILE, O_CREAT);
}

static __noinline __noclone long race_mod_read(long fd, char *buf, long len)
{
	return ksys_read(fd, buf, len);
}

/* Leave a note in a file and read it back: init exercises the VFS too. */
static __noinline __noclone long race_mod_selftest(char *buf, long size)
{
	long fd, n;

	fd = race_mod_open();
	if (fd < 0)
		return fd;
	n = ksys_write(fd, race_mod_msg, sizeof(race_mod_msg) - 1);
	ksys_close(fd);
	if (n < 0)
		return n;
	fd = race_mod_open();
	if (fd < 0)
		return fd;
	n = race_mod_read(fd, buf, size);
	ksys_close(fd);
	do_syscall_64(__NR_unlink, (long)RACE_MOD_FILE, 0, 0);
	return n;
}

int init_module(void)
{
	char *buf = kmalloc(64);
	long n;

	pr_info("race_mod: loaded\n");
	if (!buf)
		return -ENOMEM;
	n = race_mod_selftest(buf, 64);
	if (n >= 0)
		pr_info("race_mod: read back %ld bytes, checksum %ld, work(10) = %ld\n",
			n, race_mod_checksum(buf, n), race_mod_work(10));
	kfree(buf);
	return n < 0 ? n : 0;
}

void cleanup_module(void)
{
	pr_info("race_mod: unloaded\n");
}

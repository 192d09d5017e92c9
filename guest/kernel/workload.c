/*
 * workload.c - entry points the host calls to make the kernel do something
 * worth tracing (ticks, syscalls, file I/O), with results a test can check.
 */
#include <kernel.h>
#include "internal.h"

#define WORKLOAD_MAX_RECORD 64

/* Lets a module hand the kernel a pointer to one of its own functions. */
long kernel_call_fn(long (*fn)(long), long arg)
{
	if (!fn)
		return -EINVAL;
	return fn(arg);
}
EXPORT_SYMBOL(kernel_call_fn);

static inline notrace long sys_open(const char *name, int flags)
{
	return do_syscall_64(__NR_open, (long)name, flags, 0);
}

static inline notrace long sys_close(long fd)
{
	return do_syscall_64(__NR_close, fd, 0, 0);
}

/* A file per CPU, so workloads running on both CPUs never share one. */
static __noinline __noclone void workload_file_name(char *buf, size_t size,
						    const char *what)
{
	snprintf(buf, size, "/tmp/%s.cpu%u", what, smp_processor_id());
}

static __noinline __noclone size_t workload_fill_record(char *buf, long i)
{
	size_t len = 16 + i % 48, k;

	for (k = 0; k < len; k++)
		buf[k] = 'a' + (i + k) % 26;
	return len;
}

static __noinline __noclone long workload_write_record(const char *name,
						       const char *buf,
						       size_t len)
{
	long fd = sys_open(name, O_CREAT), ret;

	if (fd < 0)
		return fd;
	ret = do_syscall_64(__NR_write, fd, (long)buf, len);
	sys_close(fd);
	return ret;
}

/* Read the whole file back, as a program would: until read() returns 0. */
static __noinline __noclone long workload_read_back(const char *name, char *buf,
						    size_t size)
{
	long fd = sys_open(name, 0), got = 0, ret;

	if (fd < 0)
		return fd;
	do {
		ret = do_syscall_64(__NR_read, fd, (long)(buf + got),
				    size - got);
		if (ret > 0)
			got += ret;
	} while (ret > 0 && got < size);
	sys_close(fd);
	return ret < 0 ? ret : got;
}

/*
 * Runs `iterations` rounds of: one timer tick; open(O_CREAT), write and
 * close a record in /tmp/workload.cpuN; open, read it all back and close;
 * unlink it; getpid(); sched_yield().  Returns the first negative errno any
 * step gives, or else this checksum (0 for no iterations):
 *
 *	for i in 0 .. iterations-1:
 *		len = 16 + i % 48
 *		record[k] = 'a' + (i + k) % 26		for k in 0 .. len-1
 *		for each byte b read back, in order:
 *			sum = (sum * 31 + b) mod 2^32	(sum starts at 0)
 *	checksum = (sum + iterations) mod 2^32
 *
 * Nothing CPU-dependent (pid, jiffies, file name) enters the checksum.
 * Values: 1 -> 2201088265, 10 -> 1952034736, 100 -> 2834348802.
 */
long workload_run(long iterations)
{
	char name[32], record[WORKLOAD_MAX_RECORD], back[WORKLOAD_MAX_RECORD];
	u32 sum = 0;
	long i, k, ret;

	if (iterations < 0)
		return -EINVAL;
	workload_file_name(name, sizeof(name), "workload");
	/* A run cut short may have left its file behind. */
	do_syscall_64(__NR_unlink, (long)name, 0, 0);
	for (i = 0; i < iterations; i++) {
		size_t len = workload_fill_record(record, i);

		tick_handle_periodic();
		ret = workload_write_record(name, record, len);
		if (ret < 0)
			return ret;
		ret = workload_read_back(name, back, sizeof(back));
		if (ret < 0)
			return ret;
		for (k = 0; k < ret; k++)
			sum = sum * 31 + (u8)back[k];
		ret = do_syscall_64(__NR_unlink, (long)name, 0, 0);
		if (ret < 0)
			return ret;
		do_syscall_64(__NR_getpid, 0, 0, 0);
		ret = do_syscall_64(__NR_sched_yield, 0, 0, 0);
		if (ret < 0)
			return ret;
	}
	return (u32)(sum + iterations);
}
EXPORT_SYMBOL(workload_run);

long workload_getpid(void)
{
	return do_syscall_64(__NR_getpid, 0, 0, 0);
}
EXPORT_SYMBOL(workload_getpid);

static inline notrace u8 roundtrip_byte(long offset)
{
	return (u8)(offset * 31 + 7);
}

/*
 * Writes n bytes (byte k = (k * 31 + 7) mod 256) to a new file in chunks,
 * reads them back and returns how many matched: n when the filesystem works.
 */
long workload_fs_roundtrip(long n)
{
	char name[32], chunk[256];
	long fd, off, ret = 0, k, matched = 0;

	if (n < 0)
		return -EINVAL;
	workload_file_name(name, sizeof(name), "roundtrip");
	do_syscall_64(__NR_unlink, (long)name, 0, 0);
	fd = sys_open(name, O_CREAT);
	if (fd < 0)
		return fd;
	for (off = 0; off < n; off += ret) {
		long len = n - off;

		if (len > (long)sizeof(chunk))
			len = sizeof(chunk);
		for (k = 0; k < len; k++)
			chunk[k] = roundtrip_byte(off + k);
		ret = ksys_write(fd, chunk, len);
		if (ret <= 0)
			break;
	}
	sys_close(fd);
	if (ret < 0)
		goto out;
	fd = sys_open(name, 0);
	if (fd < 0) {
		ret = fd;
		goto out;
	}
	/* An odd chunk size, so reads and writes straddle each other. */
	for (off = 0; (ret = ksys_read(fd, chunk, 200)) > 0; off += ret)
		for (k = 0; k < ret; k++)
			matched += (u8)chunk[k] == roundtrip_byte(off + k);
	sys_close(fd);
out:
	do_syscall_64(__NR_unlink, (long)name, 0, 0);
	return ret < 0 ? ret : matched;
}
EXPORT_SYMBOL(workload_fs_roundtrip);

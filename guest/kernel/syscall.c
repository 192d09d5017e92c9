/*
 * syscall.c - the system call entry path: do_syscall_64 with the generic
 * entry/exit work around it, and the sys_call_table it dispatches through.
 */
#include <kernel.h>
#include "internal.h"

/* The registers a syscall sees; only those the table's calls read. */
struct pt_regs {
	long di, si, dx;
	long orig_ax;
	long ax;
};

typedef long (*sys_call_ptr_t)(const struct pt_regs *regs);

#define NR_syscalls (__NR_unlink + 1)

/* Syscalls entered and left on each CPU: what context tracking would see. */
unsigned long syscall_count[NR_CPUS];

static __noinline __noclone long
__x64_sys_ni_syscall(const struct pt_regs *regs)
{
	return -ENOSYS;
}

static __noinline __noclone long __x64_sys_read(const struct pt_regs *regs)
{
	return ksys_read(regs->di, (char *)regs->si, regs->dx);
}

static __noinline __noclone long __x64_sys_write(const struct pt_regs *regs)
{
	return ksys_write(regs->di, (const char *)regs->si, regs->dx);
}

static __noinline __noclone long __x64_sys_open(const struct pt_regs *regs)
{
	return do_sys_open((const char *)regs->di, regs->si);
}

static __noinline __noclone long __x64_sys_close(const struct pt_regs *regs)
{
	return ksys_close(regs->di);
}

static __noinline __noclone long
__x64_sys_sched_yield(const struct pt_regs *regs)
{
	return do_sched_yield();
}

static __noinline __noclone long __x64_sys_getpid(const struct pt_regs *regs)
{
	return get_current_pid();
}

static __noinline __noclone long __x64_sys_unlink(const struct pt_regs *regs)
{
	return do_unlinkat((const char *)regs->di);
}

static const sys_call_ptr_t sys_call_table[NR_syscalls] = {
	[0 ... NR_syscalls - 1] = __x64_sys_ni_syscall,
	[__NR_read] = __x64_sys_read,
	[__NR_write] = __x64_sys_write,
	[__NR_open] = __x64_sys_open,
	[__NR_close] = __x64_sys_close,
	[__NR_sched_yield] = __x64_sys_sched_yield,
	[__NR_getpid] = __x64_sys_getpid,
	[__NR_unlink] = __x64_sys_unlink,
};

static __noinline __noclone void enter_from_user_mode(struct pt_regs *regs)
{
	syscall_count[smp_processor_id() % NR_CPUS]++;
}

static __noinline __noclone long
syscall_enter_from_user_mode(struct pt_regs *regs, long nr)
{
	enter_from_user_mode(regs);
	/* No seccomp or ptrace here: the number goes through unchanged. */
	return nr;
}

static __noinline __noclone void exit_to_user_mode_prepare(struct pt_regs *regs)
{
	/* The last chance to act on a tick's resched request before "user". */
	if (test_tsk_need_resched(get_current()))
		schedule();
}

static __noinline __noclone void syscall_exit_to_user_mode(struct pt_regs *regs)
{
	exit_to_user_mode_prepare(regs);
}

/* The C half of entry_SYSCALL_64; the syscall's registers come as arguments. */
long do_syscall_64(long nr, long a0, long a1, long a2)
{
	struct pt_regs regs = {
		.di = a0, .si = a1, .dx = a2, .orig_ax = nr, .ax = -ENOSYS,
	};

	nr = syscall_enter_from_user_mode(&regs, nr);
	if ((unsigned long)nr < NR_syscalls)
		regs.ax = sys_call_table[nr](&regs);
	else
		regs.ax = __x64_sys_ni_syscall(&regs);
	syscall_exit_to_user_mode(&regs);
	return regs.ax;
}
EXPORT_SYMBOL(do_syscall_64);

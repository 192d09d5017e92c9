/*
 * kernel.h - the guest kernel's interface, for its own sources and for modules.
 *
 * Everything marked EXPORT_SYMBOL in the kernel sources is what a module may
 * link against; guest/README.md lists them.  Modules are built with the flags
 * in guest/__init__.py (the same as the kernel's) and provide init_module()
 * and, optionally, cleanup_module().
 */
#ifndef GUEST_KERNEL_H
#define GUEST_KERNEL_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long s64;
typedef unsigned long size_t;
typedef long ssize_t;
typedef long loff_t;
typedef _Bool bool;
#define true 1
#define false 0
#define NULL ((void *)0)

#define EPERM 1
#define ENOENT 2
#define EIO 5
#define EBADF 9
#define ENOMEM 12
#define EFAULT 14
#define EBUSY 16
#define EEXIST 17
#define ENODEV 19
#define EINVAL 22
#define ENFILE 23
#define ENOSPC 28
#define ENAMETOOLONG 36
#define ENOSYS 38

/*
 * What a module author writes: module_init(fn) / module_exit(fn) name the
 * functions the loader runs (init_module / cleanup_module, as aliases, the way
 * <linux/module.h> does it for a module), MODULE_LICENSE() goes to .modinfo.
 */
#define module_init(fn) int init_module(void) __attribute__((alias(#fn)))
#define module_exit(fn) void cleanup_module(void) __attribute__((alias(#fn)))
#define __MODULE_INFO(tag, name, info)                                       \
	static const char __mod_##name[] __used                              \
		__attribute__((section(".modinfo"), aligned(1))) = #tag "=" info
#define MODULE_LICENSE(_license) __MODULE_INFO(license, license, _license)
#define MODULE_DESCRIPTION(_description) __MODULE_INFO(description, description, _description)

/* Functions the tracer must never see: the kernel's "notrace". */
#define notrace __attribute__((no_instrument_function))
#define __noinline __attribute__((noinline))
#define __used __attribute__((used))
#define unlikely(x) __builtin_expect(!!(x), 0)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/*
 * Exported symbols live in the __ksymtab section as {value, name} pairs,
 * between __start___ksymtab and __stop___ksymtab; the module loader resolves
 * a module's undefined symbols against them and nothing else.
 */
struct kernel_symbol {
	unsigned long value;
	const char *name;
};
#define EXPORT_SYMBOL(sym)                                                   \
	static const char __kstrtab_##sym[] = #sym;                          \
	static const struct kernel_symbol __ksymtab_##sym __used             \
		__attribute__((section("__ksymtab"), aligned(8))) = {        \
			(unsigned long)&sym, __kstrtab_##sym }

/*
 * Per-CPU data, reached through %gs as on x86-64 Linux.  The host sets each
 * emulated CPU's GS base to its own area and keeps current's comm and pid
 * (the task running on that CPU) and the CPU's virtual clock up to date.
 */
struct percpu_area {
	unsigned long self;
	unsigned int cpu;
	int pid;
	char comm[16];
	unsigned long clock_ns;
	unsigned int lock_depth;	/* spinlocks held on this CPU */
};

static inline notrace unsigned int smp_processor_id(void)
{
	unsigned int cpu;
	asm volatile("movl %%gs:8, %0" : "=r"(cpu));
	return cpu;
}

static inline notrace struct percpu_area *this_cpu_area(void)
{
	struct percpu_area *p;
	asm volatile("movq %%gs:0, %0" : "=r"(p));
	return p;
}

/*
 * Spinlocks.  Each emulated CPU runs in slices of instructions, alternating with
 * the other; the host never ends a slice while lock_depth is non-zero, so a
 * section under a spinlock runs without the other CPU in between, as if its
 * spinning were instantaneous.  The lock word itself is a real atomic exchange.
 */
typedef struct {
	volatile int locked;
} spinlock_t;
#define DEFINE_SPINLOCK(x) spinlock_t x = { 0 }

static inline notrace void spin_lock(spinlock_t *lock)
{
	asm volatile("incl %%gs:40" ::: "memory");
	while (__atomic_exchange_n(&lock->locked, 1, __ATOMIC_ACQUIRE))
		asm volatile("pause");
}

static inline notrace void spin_unlock(spinlock_t *lock)
{
	__atomic_store_n(&lock->locked, 0, __ATOMIC_RELEASE);
	asm volatile("decl %%gs:40" ::: "memory");
}

/* lib.c */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strncpy(char *dst, const char *src, size_t n);

/* slab.c */
void *kmalloc(size_t size);
void *kzalloc(size_t size);
void kfree(const void *p);
size_t ksize(const void *p);

/* printk.c */
int printk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int snprintf(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
u64 local_clock(void);

#define KERN_SOH "\001"
#define KERN_ERR KERN_SOH "3"
#define KERN_WARNING KERN_SOH "4"
#define KERN_INFO KERN_SOH "6"
#define pr_info(fmt, ...) printk(KERN_INFO fmt, ##__VA_ARGS__)
#define pr_err(fmt, ...) printk(KERN_ERR fmt, ##__VA_ARGS__)

/* sched.c, fs.c, syscall.c: see those files. */
struct task_struct;
struct task_struct *get_current(void);
int get_current_pid(void);
void schedule(void);
long do_syscall_64(long nr, long a0, long a1, long a2);
long ksys_write(int fd, const char *buf, size_t count);
long ksys_read(int fd, char *buf, size_t count);
long do_sys_open(const char *filename, int flags);
long ksys_close(int fd);

/*
 * At -O2 gcc clones small functions it can specialise (foo.isra.0,
 * foo.constprop.0, foo.part.0) and traces would show those names; noinline
 * alone does not stop it.  Functions meant to be traced by name use both.
 */
#define __noclone __attribute__((noclone))

#define NR_CPUS 2
#define HZ 250

/* Ticks since boot; starts 5 minutes before wrapping 32 bits, as Linux's. */
extern volatile unsigned long jiffies;

struct sched_entity {
	unsigned long load_weight;
	u64 vruntime;
	u64 exec_start;
	u64 sum_exec_runtime;
	u64 prev_sum_exec_runtime;
	bool on_rq;
	struct sched_entity *run_next;	/* cfs_rq timeline, by vruntime */
};

struct mm_struct;
struct sched_class;

#define TASK_RUNNING 0
#define TIF_NEED_RESCHED 0x1UL

/*
 * The guest's own view of a task.  The pid and comm traces show come from
 * the per-CPU area the host maintains (get_current_pid()); these tasks are
 * what the guest scheduler picks between.
 */
struct task_struct {
	int pid;
	char comm[16];
	long state;
	unsigned long flags;		/* TIF_* */
	int nice;
	unsigned int cpu;
	u64 utime, stime;		/* ns, charged a tick at a time */
	unsigned long nvcsw;		/* context switches away from it */
	const struct sched_class *sched_class;
	struct sched_entity se;
	struct mm_struct *mm, *active_mm;
};

static inline notrace bool test_tsk_need_resched(struct task_struct *tsk)
{
	return tsk->flags & TIF_NEED_RESCHED;
}

/* workload.c */
long kernel_call_fn(long (*fn)(long), long arg);
long workload_run(long iterations);
long workload_getpid(void);
long workload_fs_roundtrip(long n);

/* More errnos and a syscall number the filesystem needs. */
#define ENOTDIR 20
#define EISDIR 21
#define EMFILE 24
#define __NR_unlink 87

/* Syscall numbers understood by do_syscall_64 (Linux x86-64 numbering). */
#define __NR_read 0
#define __NR_write 1
#define __NR_open 2
#define __NR_close 3
#define __NR_sched_yield 24
#define __NR_getpid 39

#define O_CREAT 0100

#endif

/*
 * main.c - start_kernel and the tracer callback the ftrace trampoline calls.
 */
#include <kernel.h>

extern void kmem_cache_init(void);
extern void sched_init(void);
extern void vfs_caches_init(void);
extern void return_to_handler(void);

/* What ftrace_caller passes to its callback as "op"; set by the host. */
unsigned long function_trace_op;

/* Events seen by function_trace_call, per CPU: a guest-side count the host
 * checks its own trace against. */
unsigned long ftrace_calls_seen[2];

/*
 * The in-guest recorder, the kernel's way: function_trace_call writes each
 * event into its CPU's ring (a power-of-two number of slots, set by the host)
 * and the host drains the rings when the trace is read, or when a ring is full
 * of events it has not read (trace_ring_full), so that the host's buffer, sized
 * by buffer_size_kb, decides what is kept.  Off (0) when the host records from
 * a hook on function_trace_call instead.
 */
#define TRACE_RING_CAPACITY 32768

struct trace_event {
	unsigned long ip;
	unsigned long parent_ip;
	unsigned long ts;
	long pid;
};

/* A ring's head lives with the tracer's other small, hot data; its events fill
 * pages of their own (as the kernel's ring buffer pages), so the head does not
 * share a TLB slot with the pages the events stream through. */
struct trace_ring {
	unsigned long written;
	unsigned long mask;	/* slots - 1 */
	unsigned long limit;	/* written reaches this: every slot holds an unread event */
};

int ftrace_guest_recording;
struct trace_ring trace_rings[2];
struct trace_event trace_ring_events[2][TRACE_RING_CAPACITY]
	__attribute__((aligned(4096), section(".bss..page_aligned")));

/* The host drains the ring here (a hook on this function). */
notrace __attribute__((noinline)) void trace_ring_full(unsigned int cpu)
{
	asm volatile("" : : "r"(cpu) : "memory");
}

/* Virtual nanoseconds one traced call costs its CPU, as the host charges too. */
#define TRACE_EVENT_NS 100

/*
 * The function tracer's callback, reached from ftrace_call once the host's
 * ftrace_update_ftrace_func() points that site here.  notrace, as the
 * kernel's is.
 */
notrace void function_trace_call(unsigned long ip, unsigned long parent_ip,
				 unsigned long op, void *regs)
{
	unsigned int cpu = smp_processor_id() & 1;
	struct percpu_area *pc;
	struct trace_ring *ring;
	struct trace_event *e;

	ftrace_calls_seen[cpu]++;
	if (!ftrace_guest_recording)
		return;
	pc = this_cpu_area();
	ring = &trace_rings[cpu];
	if (ring->written == ring->limit)
		trace_ring_full(cpu);
	e = &trace_ring_events[cpu][ring->written & ring->mask];
	pc->clock_ns += TRACE_EVENT_NS;
	e->ip = ip;
	e->parent_ip = parent_ip;
	e->ts = pc->clock_ns;
	e->pid = pc->pid;
	ring->written++;
}

/* Called with several ftrace_ops registered: the host walks its ops list. */
notrace void ftrace_ops_list_func(unsigned long ip, unsigned long parent_ip,
				  unsigned long op, void *regs)
{
	ftrace_calls_seen[smp_processor_id() & 1]++;
}

/*
 * The callbacks of the other ftrace_ops users, each reached from ftrace_call
 * (one ops registered) as the kernel's are: the host does their work in a hook
 * on their first instruction, as it does function_trace_call's with the hook
 * recorder.  notrace and never inlined, so each is one address the trampoline
 * can call.
 */
#define HOST_CALLBACK(name)						\
notrace __attribute__((noinline)) void name(unsigned long ip,		\
		unsigned long parent_ip, unsigned long op, void *regs)	\
{									\
	asm volatile("" : : "r"(ip), "r"(parent_ip), "r"(op), "r"(regs) : "memory"); \
}

HOST_CALLBACK(function_stack_trace_call)	/* function, with func_stack_trace */
HOST_CALLBACK(ftrace_pid_func)			/* set_ftrace_pid's filter */
HOST_CALLBACK(function_trace_probe_call)	/* set_ftrace_filter's commands */
HOST_CALLBACK(stack_trace_call)			/* the stack tracer */
HOST_CALLBACK(function_profile_call)		/* the function profiler */

/*
 * The function graph tracer's return stack, one per CPU (a task never leaves
 * its CPU here).  The host hooks ftrace_graph_entry and
 * ftrace_return_to_handler to record entries and exits.
 */
#define FTRACE_RETFUNC_DEPTH 50
#define FTRACE_NOTRACE_DEPTH 65536

struct ftrace_ret_stack {
	unsigned long ret;
	unsigned long func;
};

struct ftrace_ret_stack ftrace_ret_stack[2][FTRACE_RETFUNC_DEPTH];
int ftrace_curr_ret_stack[2] = { -1, -1 };
/* trace_graph_entry()'s answer and ftrace_graph_notrace_addr()'s, per CPU:
 * the host's hook on ftrace_graph_entry leaves them here.  (The kernel's
 * entry callback takes struct ftrace_graph_ent {func, depth}; the caller's
 * address is passed too, for the host's audit of traced calls.) */
int ftrace_graph_verdict[2] = { 1, 1 };
int ftrace_graph_notrace[2];

notrace __attribute__((noinline)) int ftrace_graph_entry(unsigned long func, long depth,
							unsigned long parent_ip)
{
	asm volatile("" : : "r"(func), "r"(depth), "r"(parent_ip) : "memory");
	return *(volatile int *)&ftrace_graph_verdict[smp_processor_id() & 1];
}

/* As arch/x86/kernel/ftrace.c's: the entry callback decides with depth =
 * curr_ret_stack + 1, then ftrace_push_return_trace(). */
notrace void prepare_ftrace_return(unsigned long *parent, unsigned long self_addr)
{
	unsigned int cpu = smp_processor_id() & 1;
	int index;

	if (!ftrace_graph_entry(self_addr, ftrace_curr_ret_stack[cpu] + 1, *parent))
		return;
	index = ftrace_curr_ret_stack[cpu] + 1;
	if (index >= FTRACE_RETFUNC_DEPTH)
		return;		/* -EBUSY: this call is not hooked */
	ftrace_ret_stack[cpu][index].ret = *parent;
	ftrace_ret_stack[cpu][index].func = self_addr;
	ftrace_curr_ret_stack[cpu] = index;
	/* set_graph_notrace: nothing under this function is traced, until it returns */
	if (*(volatile int *)&ftrace_graph_notrace[cpu])
		ftrace_curr_ret_stack[cpu] -= FTRACE_NOTRACE_DEPTH;
	*parent = (unsigned long)return_to_handler;
}

/* ftrace_pop_return_trace() and the index recovery of ftrace_return_to_handler(). */
notrace unsigned long ftrace_return_to_handler(void)
{
	unsigned int cpu = smp_processor_id() & 1;
	int index = ftrace_curr_ret_stack[cpu];
	unsigned long ret;

	if (index < 0)
		index += FTRACE_NOTRACE_DEPTH;	/* a notrace'd function returns */
	ret = ftrace_ret_stack[cpu][index].ret;
	ftrace_curr_ret_stack[cpu]--;
	if (ftrace_curr_ret_stack[cpu] < -1)
		ftrace_curr_ret_stack[cpu] += FTRACE_NOTRACE_DEPTH;
	return ret;
}

/*
 * The machine writes both before start_kernel() runs: the banner names the kernel tree the
 * booted variant models, the command line is what the user booted with.
 */
char linux_banner[256] = "Linux version 4.8.0-ftrace-emu (gcc -pg -mfentry -mrecord-mcount) #1 SMP\n";
char boot_command_line[256] = "console=ttyS0";

int start_kernel(void)
{
	kmem_cache_init();
	printk(KERN_INFO "%s", linux_banner);
	printk(KERN_INFO "Command line: %s\n", boot_command_line);
	sched_init();
	vfs_caches_init();
	printk(KERN_INFO "Memory: %luK heap available\n", 512UL);
	return 0;
}

/* Modules' "call __fentry__" sites are relocated against this export. */
extern void __fentry__(void);
EXPORT_SYMBOL(__fentry__);

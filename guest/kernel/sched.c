/*
 * sched.c - a CFS-flavoured scheduler in miniature: per-CPU run queues kept
 * in vruntime order, the periodic tick and schedule(), so that a trace shows
 * the call chains a real kernel's timer tick and context switch produce.
 */
#include <kernel.h>
#include "internal.h"

#define NICE_0_LOAD 1024UL
#define TICK_NSEC (1000000000UL / HZ)
#define INITIAL_JIFFIES ((unsigned long)(unsigned int)(-300 * HZ))
/* Targeted preemption latency, as sysctl_sched_latency's default. */
#define SCHED_LATENCY_NS 6000000UL

struct mm_struct {
	unsigned long pgd;		/* what CR3 would be loaded with */
	int mm_users;
};

struct cfs_rq {
	unsigned long load_weight;	/* of every queued entity and curr */
	unsigned int nr_running;	/* likewise */
	u64 min_vruntime;
	struct sched_entity *curr;	/* running: not on the timeline */
	struct sched_entity *timeline;	/* leftmost (smallest vruntime) first */
};

struct rq {
	unsigned int cpu;
	u64 clock, clock_task;
	unsigned long nr_switches;
	unsigned long yld_count;
	unsigned long idle_ticks;
	struct task_struct *curr, *idle;
	struct mm_struct *loaded_mm;	/* cpu_tlbstate.loaded_mm */
	bool tlb_lazy;			/* a kernel thread borrows loaded_mm */
	struct cfs_rq cfs;
};

struct sched_class {
	void (*enqueue_task)(struct rq *rq, struct task_struct *p);
	void (*yield_task)(struct rq *rq);
	struct task_struct *(*pick_next_task)(struct rq *rq,
					      struct task_struct *prev);
	void (*put_prev_task)(struct rq *rq, struct task_struct *prev);
	void (*task_tick)(struct rq *rq, struct task_struct *curr, int queued);
};

static const struct sched_class fair_sched_class, idle_sched_class;

volatile unsigned long jiffies = INITIAL_JIFFIES;
EXPORT_SYMBOL(jiffies);

/* Which CPU advances jiffies: the first to tick, as with NO_HZ. */
static int tick_do_timer_cpu = -1;

static struct rq runqueues[NR_CPUS];

/* nice -20..19 to load weight, as the kernel's sched_prio_to_weight[]. */
static const unsigned long sched_prio_to_weight[40] = {
	88761, 71755, 56483, 46273, 36291,
	29154, 23254, 18705, 14949, 11916,
	9548, 7620, 6100, 4904, 3906,
	3121, 2501, 1991, 1586, 1277,
	1024, 820, 655, 526, 423,
	335, 272, 215, 172, 137,
	110, 87, 70, 56, 45,
	36, 29, 23, 18, 15,
};

static struct mm_struct init_mm = { .pgd = 0x1000, .mm_users = 2 };
static struct mm_struct bash_mm = { .pgd = 0x5000, .mm_users = 1 };
static struct mm_struct sshd_mm = { .pgd = 0x7000, .mm_users = 1 };

#define TASK(_pid, _comm, _nice, _cpu, _mm) {				\
	.pid = _pid, .comm = _comm, .state = TASK_RUNNING,		\
	.nice = _nice, .cpu = _cpu, .mm = _mm, .active_mm = _mm }

/* Per CPU: its idle task first, then the tasks queued on it at boot. */
static struct task_struct boot_tasks[] = {
	TASK(0, "swapper/0", 0, 0, NULL),
	TASK(1, "init", 0, 0, &init_mm),
	TASK(23, "kworker/0:1", 0, 0, NULL),
	TASK(1042, "bash", 0, 0, &bash_mm),
	TASK(0, "swapper/1", 0, 1, NULL),
	TASK(27, "kworker/1:1", 0, 1, NULL),
	TASK(812, "sshd", 5, 1, &sshd_mm),
};

static inline notrace struct rq *cpu_rq(unsigned int cpu)
{
	return &runqueues[cpu % NR_CPUS];
}

static inline notrace struct rq *this_rq(void)
{
	return cpu_rq(smp_processor_id());
}

static inline notrace struct task_struct *task_of(struct sched_entity *se)
{
	return (void *)((char *)se - __builtin_offsetof(struct task_struct, se));
}

static inline notrace struct rq *rq_of(struct cfs_rq *cfs_rq)
{
	return (void *)((char *)cfs_rq - __builtin_offsetof(struct rq, cfs));
}

__noinline __noclone struct task_struct *get_current(void)
{
	return this_rq()->curr;
}
EXPORT_SYMBOL(get_current);

/* The host's notion of current (shown in traces), not the guest's rq->curr. */
int get_current_pid(void)
{
	return this_cpu_area()->pid;
}
EXPORT_SYMBOL(get_current_pid);

static __noinline __noclone void resched_curr(struct rq *rq)
{
	rq->curr->flags |= TIF_NEED_RESCHED;
}

static __noinline __noclone void update_rq_clock(struct rq *rq)
{
	s64 delta = local_clock() - rq->clock;

	/* The host's clock only moves forward; guard as the kernel does. */
	if (delta < 0)
		return;
	rq->clock += delta;
	rq->clock_task = rq->clock;
}

/* delta * NICE_0_LOAD / weight, without the kernel's fixed-point inverse. */
static __noinline __noclone u64 calc_delta_fair(u64 delta,
						struct sched_entity *se)
{
	if (se->load_weight != NICE_0_LOAD)
		delta = delta * NICE_0_LOAD / se->load_weight;
	return delta;
}

static __noinline __noclone void update_min_vruntime(struct cfs_rq *cfs_rq)
{
	struct sched_entity *curr = cfs_rq->curr;
	u64 vruntime = cfs_rq->min_vruntime;

	if (curr)
		vruntime = curr->vruntime;
	if (cfs_rq->timeline) {
		if (!curr || cfs_rq->timeline->vruntime < vruntime)
			vruntime = cfs_rq->timeline->vruntime;
	}
	/* min_vruntime never goes backwards, or sleepers would gain credit. */
	if (vruntime > cfs_rq->min_vruntime)
		cfs_rq->min_vruntime = vruntime;
}

static __noinline __noclone void update_curr(struct cfs_rq *cfs_rq)
{
	struct sched_entity *curr = cfs_rq->curr;
	u64 now = rq_of(cfs_rq)->clock_task;
	s64 delta_exec;

	if (unlikely(!curr))
		return;
	delta_exec = now - curr->exec_start;
	if (unlikely(delta_exec < 0))
		return;
	curr->exec_start = now;
	curr->sum_exec_runtime += delta_exec;
	curr->vruntime += calc_delta_fair(delta_exec, curr);
	update_min_vruntime(cfs_rq);
}

static __noinline __noclone void __enqueue_entity(struct cfs_rq *cfs_rq,
						  struct sched_entity *se)
{
	struct sched_entity **link = &cfs_rq->timeline;

	/* Equal keys go right, so tasks of equal vruntime take turns. */
	while (*link && (*link)->vruntime <= se->vruntime)
		link = &(*link)->run_next;
	se->run_next = *link;
	*link = se;
}

static __noinline __noclone void __dequeue_entity(struct cfs_rq *cfs_rq,
						  struct sched_entity *se)
{
	struct sched_entity **link = &cfs_rq->timeline;

	while (*link && *link != se)
		link = &(*link)->run_next;
	if (*link)
		*link = se->run_next;
	se->run_next = NULL;
}

/* A newly queued task starts at min_vruntime so it cannot hog the CPU. */
static __noinline __noclone void place_entity(struct cfs_rq *cfs_rq,
					      struct sched_entity *se)
{
	if (se->vruntime < cfs_rq->min_vruntime)
		se->vruntime = cfs_rq->min_vruntime;
}

static __noinline __noclone void enqueue_entity(struct cfs_rq *cfs_rq,
						struct sched_entity *se)
{
	update_curr(cfs_rq);
	place_entity(cfs_rq, se);
	if (se != cfs_rq->curr)
		__enqueue_entity(cfs_rq, se);
	se->on_rq = true;
	cfs_rq->load_weight += se->load_weight;
	cfs_rq->nr_running++;
}

static __noinline __noclone void enqueue_task_fair(struct rq *rq,
						   struct task_struct *p)
{
	enqueue_entity(&rq->cfs, &p->se);
}

static __noinline __noclone void check_preempt_curr(struct rq *rq,
						    struct task_struct *p)
{
	/* Anything runnable beats the idle task. */
	if (rq->curr == rq->idle && p != rq->idle)
		resched_curr(rq);
}

static __noinline __noclone void activate_task(struct rq *rq,
					       struct task_struct *p)
{
	p->sched_class->enqueue_task(rq, p);
	check_preempt_curr(rq, p);
}

static __noinline __noclone u64 sched_slice(struct cfs_rq *cfs_rq,
					    struct sched_entity *se)
{
	return SCHED_LATENCY_NS * se->load_weight / cfs_rq->load_weight;
}

static __noinline __noclone void check_preempt_tick(struct cfs_rq *cfs_rq,
						    struct sched_entity *curr)
{
	u64 ran = curr->sum_exec_runtime - curr->prev_sum_exec_runtime;

	if (ran > sched_slice(cfs_rq, curr))
		resched_curr(rq_of(cfs_rq));
}

static __noinline __noclone void entity_tick(struct cfs_rq *cfs_rq,
					     struct sched_entity *curr)
{
	update_curr(cfs_rq);
	if (cfs_rq->nr_running > 1)
		check_preempt_tick(cfs_rq, curr);
}

static __noinline __noclone void task_tick_fair(struct rq *rq,
						struct task_struct *curr,
						int queued)
{
	entity_tick(&rq->cfs, &curr->se);
}

static __noinline __noclone void task_tick_idle(struct rq *rq,
						struct task_struct *curr,
						int queued)
{
}

static __noinline __noclone void put_prev_entity(struct cfs_rq *cfs_rq,
						 struct sched_entity *prev)
{
	update_curr(cfs_rq);
	if (prev->on_rq)
		__enqueue_entity(cfs_rq, prev);
	cfs_rq->curr = NULL;
}

static __noinline __noclone void put_prev_task_fair(struct rq *rq,
						    struct task_struct *prev)
{
	put_prev_entity(&rq->cfs, &prev->se);
}

static __noinline __noclone void put_prev_task_idle(struct rq *rq,
						    struct task_struct *prev)
{
}

static __noinline __noclone void set_next_entity(struct cfs_rq *cfs_rq,
						 struct sched_entity *se)
{
	__dequeue_entity(cfs_rq, se);
	se->exec_start = rq_of(cfs_rq)->clock_task;
	se->prev_sum_exec_runtime = se->sum_exec_runtime;
	cfs_rq->curr = se;
}

static __noinline __noclone struct sched_entity *
pick_next_entity(struct cfs_rq *cfs_rq)
{
	return cfs_rq->timeline;
}

static __noinline __noclone struct task_struct *
pick_next_task_idle(struct rq *rq, struct task_struct *prev)
{
	prev->sched_class->put_prev_task(rq, prev);
	return rq->idle;
}

static __noinline __noclone struct task_struct *
pick_next_task_fair(struct rq *rq, struct task_struct *prev)
{
	struct cfs_rq *cfs_rq = &rq->cfs;
	struct sched_entity *se;

	if (!cfs_rq->nr_running)
		return NULL;
	prev->sched_class->put_prev_task(rq, prev);
	se = pick_next_entity(cfs_rq);
	set_next_entity(cfs_rq, se);
	return task_of(se);
}

/* The class order is fair, then idle, as in the kernel (minus rt and dl). */
static __noinline __noclone struct task_struct *
pick_next_task(struct rq *rq, struct task_struct *prev)
{
	struct task_struct *p = pick_next_task_fair(rq, prev);

	return p ? p : pick_next_task_idle(rq, prev);
}

static __noinline __noclone void enter_lazy_tlb(struct mm_struct *mm,
						struct task_struct *tsk)
{
	this_rq()->tlb_lazy = true;
}

/*
 * Only the bookkeeping of a CR3 switch: the emulated CPU runs with no page
 * tables, so there is nothing to load.
 */
static __noinline __noclone void switch_mm_irqs_off(struct mm_struct *prev,
						    struct mm_struct *next,
						    struct task_struct *tsk)
{
	struct rq *rq = this_rq();

	rq->tlb_lazy = false;
	if (prev == next)
		return;
	rq->loaded_mm = next;
}

static __noinline __noclone void finish_task_switch(struct task_struct *prev)
{
	struct rq *rq = this_rq();

	prev->nvcsw++;
	/* A kernel thread only borrowed the mm it ran on. */
	if (!prev->mm)
		prev->active_mm = NULL;
	rq->nr_switches++;
}

/*
 * There is no second stack to switch to: the host owns each CPU's register
 * context, so switching is rq->curr and mm bookkeeping, and the caller keeps
 * running, now on behalf of next.
 */
static __noinline __noclone void context_switch(struct rq *rq,
						struct task_struct *prev,
						struct task_struct *next)
{
	if (!next->mm) {
		enter_lazy_tlb(prev->active_mm, next);
		next->active_mm = prev->active_mm;
	} else {
		switch_mm_irqs_off(prev->active_mm, next->mm, next);
	}
	finish_task_switch(prev);
}

static __noinline __noclone void __schedule(bool preempt)
{
	struct rq *rq = this_rq();
	struct task_struct *prev = rq->curr, *next;

	prev->flags &= ~TIF_NEED_RESCHED;
	update_rq_clock(rq);
	next = pick_next_task(rq, prev);
	if (next != prev) {
		rq->curr = next;
		context_switch(rq, prev, next);
	}
}

__noinline __noclone void schedule(void)
{
	__schedule(false);
}
EXPORT_SYMBOL(schedule);

/*
 * Yielding puts current behind every other queued task: the
 * sched_compat_yield behaviour, easier to follow in a trace than buddies.
 */
static __noinline __noclone void yield_task_fair(struct rq *rq)
{
	struct sched_entity *se = &rq->curr->se, *last = rq->cfs.timeline;

	if (rq->cfs.nr_running <= 1)
		return;
	update_rq_clock(rq);
	update_curr(&rq->cfs);
	while (last && last->run_next)
		last = last->run_next;
	if (last && last->vruntime >= se->vruntime)
		se->vruntime = last->vruntime + 1;
}

static __noinline __noclone void yield_task_idle(struct rq *rq)
{
}

__noinline __noclone long do_sched_yield(void)
{
	struct rq *rq = this_rq();

	rq->yld_count++;
	rq->curr->sched_class->yield_task(rq);
	schedule();
	return 0;
}

__noinline __noclone void scheduler_tick(void)
{
	struct rq *rq = this_rq();
	struct task_struct *curr = rq->curr;

	update_rq_clock(rq);
	curr->sched_class->task_tick(rq, curr, 0);
}

static __noinline __noclone void account_idle_time(struct rq *rq, u64 cputime)
{
	rq->idle_ticks++;
}

static __noinline __noclone void account_system_time(struct task_struct *p,
						     u64 cputime)
{
	p->stime += cputime;
}

static __noinline __noclone void account_user_time(struct task_struct *p,
						   u64 cputime)
{
	p->utime += cputime;
}

static __noinline __noclone void account_process_tick(struct task_struct *p,
						      int user_tick)
{
	struct rq *rq = this_rq();

	if (user_tick)
		account_user_time(p, TICK_NSEC);
	else if (p != rq->idle)
		account_system_time(p, TICK_NSEC);
	else
		account_idle_time(rq, TICK_NSEC);
}

static __noinline __noclone void update_process_times(int user_tick)
{
	account_process_tick(get_current(), user_tick);
	scheduler_tick();
}

static __noinline __noclone void do_timer(unsigned long ticks)
{
	jiffies += ticks;
}

static __noinline __noclone void tick_periodic(int cpu)
{
	if (tick_do_timer_cpu < 0)
		tick_do_timer_cpu = cpu;
	if (tick_do_timer_cpu == cpu)
		do_timer(1);
	/* The "interrupt" always arrives from kernel mode here. */
	update_process_times(0);
}

/* The periodic timer's event handler: one call is one tick on this CPU. */
__noinline __noclone void tick_handle_periodic(void)
{
	tick_periodic(smp_processor_id());
}

static const struct sched_class fair_sched_class = {
	.enqueue_task = enqueue_task_fair,
	.yield_task = yield_task_fair,
	.pick_next_task = pick_next_task_fair,
	.put_prev_task = put_prev_task_fair,
	.task_tick = task_tick_fair,
};

static const struct sched_class idle_sched_class = {
	.yield_task = yield_task_idle,
	.pick_next_task = pick_next_task_idle,
	.put_prev_task = put_prev_task_idle,
	.task_tick = task_tick_idle,
};

static __noinline __noclone void init_idle(struct rq *rq,
					   struct task_struct *idle)
{
	idle->sched_class = &idle_sched_class;
	idle->active_mm = &init_mm;
	rq->idle = idle;
	rq->curr = idle;
	rq->loaded_mm = &init_mm;
}

void sched_init(void)
{
	unsigned int i;

	for (i = 0; i < NR_CPUS; i++)
		cpu_rq(i)->cpu = i;
	for (i = 0; i < ARRAY_SIZE(boot_tasks); i++) {
		struct task_struct *p = &boot_tasks[i];
		struct rq *rq = cpu_rq(p->cpu);

		p->se.load_weight = sched_prio_to_weight[p->nice + 20];
		if (!rq->idle) {
			init_idle(rq, p);
			continue;
		}
		p->sched_class = &fair_sched_class;
		activate_task(rq, p);
	}
	printk(KERN_INFO "sched: CFS run queues for %d CPUs, %d tasks\n",
	       NR_CPUS, (int)ARRAY_SIZE(boot_tasks));
}

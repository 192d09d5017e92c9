/*
 * internal.h - what the guest kernel's own sources share but does not export:
 * modules cannot link against these (kernel.h declares only the exports).
 */
#ifndef GUEST_INTERNAL_H
#define GUEST_INTERNAL_H

void scheduler_tick(void);
void tick_handle_periodic(void);
long do_unlinkat(const char *pathname);
long do_sched_yield(void);

#endif

/*
 * mmulab Linux shim: <linux/sched/mm.h>: references to an mm_struct.
 * mmget_not_zero fails once the lab's address space has exited (its
 * users dropped to 0). An mmput that would drop the last user while the
 * address space still runs (more puts than gets) is reported; an mmdrop
 * past zero likewise.
 */
#ifndef MMULAB_LINUX_SCHED_MM_H
#define MMULAB_LINUX_SCHED_MM_H

#include <linux/mm_types.h>

bool mmget_not_zero(struct mm_struct *mm);
void mmget(struct mm_struct *mm);
void mmput(struct mm_struct *mm);
void mmgrab(struct mm_struct *mm);
void mmdrop(struct mm_struct *mm);
#define mmput_async(mm) mmput(mm)

#endif /* MMULAB_LINUX_SCHED_MM_H */

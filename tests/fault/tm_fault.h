/* tm_fault.h - in-process control of the fault shim (tests/fault/tm_fault.c)
 * for unit tests linked with tm_fault_inproc: the test's own write, pwrite,
 * fsync, fdatasync, close, rename, renameat, mkdir and unlink calls (and
 * those of the product code linked into it) go through the shim. */
#ifndef TM_FAULT_H
#define TM_FAULT_H

/* From now on, the nth call (1-based; 0: count only) of op ("write",
 * "fsync", "close", "rename", "mkdir", "unlink", ...) on a path under
 * prefix (NULL or "": any) fails with err, or with short_write (write and
 * pwrite) writes half and returns that. Resets the count. -1: unknown op. */
int tm_fault_arm(const char *op, long n, int err, int short_write, const char *prefix);
void tm_fault_disarm(void);
/* Calls counted since the last arm, and whether the fault fired. */
long tm_fault_calls(void);
int tm_fault_injected(void);

#endif

/*
 * shutdown.h - a bound on how long a stopping program may take.
 */
#ifndef TM_SHUTDOWN_H
#define TM_SHUTDOWN_H

/* Start a detached thread that, unless the process has exited within
 * grace_ms, logs event=shutdown_stuck for comp and _exit(1)s. Call it once
 * the program's state is safe (everything that must survive is durable), so
 * a teardown stuck in a library call (nng_close waiting on a dead peer)
 * cannot keep the process, and with it a restart, waiting. */
void tm_shutdown_watchdog(const char *comp, unsigned grace_ms);

#endif

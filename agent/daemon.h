/*
 * daemon.h - the agent's long-running loop: register, persist identity,
 * heartbeat, and ride out coordinator outages with backoff + jitter.
 */
#ifndef TM_AGENT_DAEMON_H
#define TM_AGENT_DAEMON_H

#include "common/config.h"
#include "common/err.h"

typedef struct tm_daemon tm_daemon;

int tm_daemon_new(tm_daemon **out, const tm_agent_conf *conf, tm_err *err);
/* Runs until tm_daemon_stop(); returns 0 on a clean stop. */
int tm_daemon_run(tm_daemon *d);
/* Async-signal-unsafe: call from a normal thread (the signal thread). */
void tm_daemon_stop(tm_daemon *d);
void tm_daemon_free(tm_daemon *d);

#endif

/*
 * log_report.h - tells the coordinator which log files are archived where.
 *
 * A thread of the agent daemon lists each PostgreSQL target's archived WAL
 * in every repository, cuts it into contiguous runs per timeline and sends
 * them with Coordinator.ReportLog; the coordinator derives the PITR window,
 * the gaps and the RPO from them. Listing is the truth (not what this host
 * pushed), so a segment deleted or lost in one region shows as a gap there.
 */
#ifndef TM_AGENT_LOG_REPORT_H
#define TM_AGENT_LOG_REPORT_H

#include <stdint.h>

#include "common/config.h"
#include "common/rpc.h"

typedef struct tm_log_reporter tm_log_reporter;

/* Report every interval_ms (first report at once). */
int tm_log_reporter_start(tm_log_reporter **out, const tm_agent_conf *conf, tm_rpc_client *rpc,
                          uint32_t interval_ms, tm_err *err);
void tm_log_reporter_stop(tm_log_reporter *r);
void tm_log_reporter_free(tm_log_reporter *r);

/* One pass over every target and repository (used by the thread, and by
 * tests). Returns the number of reports the coordinator accepted. */
int tm_log_report_once(const tm_agent_conf *conf, tm_rpc_client *rpc, tm_err *err);

#endif

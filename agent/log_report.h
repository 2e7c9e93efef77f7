/*
 * log_report.h - tells the coordinator which log files are archived where.
 *
 * A thread of the agent daemon lists the archived log of each target whose
 * engine ships one, in every repository; the engine cuts it into contiguous
 * runs per chain (tm_engine.log_ranges) and tells the shipping status
 * (.log_status, and its shipper's reports); the runs go to the coordinator
 * with Coordinator.ReportLog, which derives the restorable window, the gaps
 * and the RPO from them. Listing is the truth (not what this host pushed),
 * so an object deleted or lost in one region shows as a gap there.
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
/* Report soon (within about a second): a shipper stored a range. */
void tm_log_reporter_kick(tm_log_reporter *r);
void tm_log_reporter_free(tm_log_reporter *r);

/* One pass over every target and repository (used by the thread, and by
 * tests). Returns the number of reports the coordinator accepted. */
int tm_log_report_once(const tm_agent_conf *conf, tm_rpc_client *rpc, tm_err *err);

#endif

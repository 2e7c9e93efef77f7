/*
 * policy.h - which coordinator.yaml policy applies to a target.
 *
 * A policy matches a target by the target's kind (match.kind; absent = any)
 * and by labels (match.labels: every one must equal the serving agent's
 * label). The first matching policy in file order wins, so a specific policy
 * goes above a catch-all. A target that no policy matches gets no scheduled
 * backups and no policy-based alerts; the scheduler reports it (log line,
 * tidemark_targets_without_policy) instead of ignoring it silently.
 */
#ifndef TM_POLICY_H
#define TM_POLICY_H

#include <stddef.h>

#include "common/config.h"
#include "common/err.h"
#include "coordinator/catalog.h"
#include "coordinator/retention.h"

/* The first policy that applies, or NULL. target_kind is tidemark.TargetKind. */
const tm_policy_conf *tm_policy_match(const tm_coordinator_conf *conf, int target_kind,
                                      const tm_label *labels, size_t n_labels);

/* The policy of a target known to the catalog (its kind and its agent's
 * labels). *out is NULL when none applies. TM_ENOENT for an unknown target. */
int tm_policy_for_target(const tm_coordinator_conf *conf, tm_catalog *cat, const char *target,
                         const tm_policy_conf **out, tm_err *err);

/* The retention.h policy of a config policy (NULL p = retention defaults). */
void tm_policy_retention(const tm_policy_conf *p, tm_retention_policy *out);

#endif

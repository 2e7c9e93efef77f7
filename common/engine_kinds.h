/*
 * engine_kinds.h - the one table of target kinds outside the engines.
 *
 * common/ and coordinator/ know a kind only through this table: its name
 * (the `kind:` of a target, the key of its engine block in agent.yaml, the
 * `match.kind` of a policy), its tidemark.TargetKind and the traits the
 * coordinator and the config need (which backup types it takes, its default
 * snapshot schedule). The engines themselves register in agent/engine.c.
 */
#ifndef TM_ENGINE_KINDS_H
#define TM_ENGINE_KINDS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tm_engine_kind {
    const char *name; /* the kind's name, as in targets[].kind */
    int kind;         /* tidemark.TargetKind */
    unsigned backups; /* bit (1u << tidemark.BackupType) per backup type it takes */
    /* cron of schedule.snapshot for a policy matching this kind when the
     * policy says nothing; NULL = no default snapshots. */
    const char *default_snapshot;
    /* true: the kind ships no log between backups (a logical dump of a
     * server the agent cannot read files from), so its restorable points
     * are its backups and its RPO is bounded by the backup interval;
     * status says so instead of a log shipping state. */
    bool backups_only;
} tm_engine_kind;

/* NULL when unknown. */
const tm_engine_kind *tm_engine_kind_by_name(const char *name);
const tm_engine_kind *tm_engine_kind_by_kind(int kind);
/* All kinds, in TargetKind order; *n gets the count. */
const tm_engine_kind *tm_engine_kinds(size_t *n);
/* True when kind k takes backups of tidemark.BackupType type. */
bool tm_engine_kind_takes(const tm_engine_kind *k, int type);
/* The kind names for messages, in table order: "a, b, c or d" (last_or) or
 * "a, b, c, d". */
const char *tm_engine_kind_list(bool last_or);

#endif

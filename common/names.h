/*
 * names.h - the lowercase words for the proto's enums, as logs, tables and
 * JSON show them ("online", "backup", "full"). One table each, used by the
 * coordinator, the agent and tidemarkctl alike. Out-of-range values read
 * "unknown".
 */
#ifndef TM_NAMES_H
#define TM_NAMES_H

const char *tm_agent_state_name(int state); /* tidemark.AgentState */
const char *tm_target_kind_name(int kind);  /* tidemark.TargetKind */
const char *tm_task_kind_name(int kind);    /* tidemark.TaskKind */
const char *tm_task_state_name(int state);  /* tidemark.TaskState */
const char *tm_backup_type_name(int type);  /* tidemark.BackupType */
/* Reverse lookups: the enum value, or 0 (UNSPECIFIED) if unknown. */
int tm_agent_state_parse(const char *s);
int tm_target_kind_parse(const char *s);

#endif

/*
 * restore_cmd.h - `tidemark-agent restore ...` (restore_cmd.c).
 */
#ifndef TM_AGENT_RESTORE_CMD_H
#define TM_AGENT_RESTORE_CMD_H

/* argv[0] = "restore". Returns the process exit code (0 ok, 1 failure, 2
 * usage or configuration). */
int tm_restore_cmd(const char *config, int argc, char **argv);

#endif

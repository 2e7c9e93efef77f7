/*
 * restore_cmd.h - `tidemark-agent restore ...` (restore_cmd.c).
 */
#ifndef TM_AGENT_RESTORE_CMD_H
#define TM_AGENT_RESTORE_CMD_H

#include <stdint.h>

/* argv[0] = "restore". Returns the process exit code (0 ok, 1 failure, 2
 * usage or configuration). */
int tm_restore_cmd(const char *config, int argc, char **argv);

/* An engine's `restore --port N` (restore_cli): 0 with *port set, or -1
 * after telling the user on stderr (the caller exits 2). */
int tm_restore_cli_port(const char *arg, uint32_t *port);

#endif

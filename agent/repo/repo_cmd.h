/*
 * repo_cmd.h - `tidemark-agent repo ...` (repo_cmd.c).
 */
#ifndef TM_AGENT_REPO_CMD_H
#define TM_AGENT_REPO_CMD_H

/* argv[0] = "repo". Returns the process exit code (0 ok, 1 problem or
 * failure, 2 usage or configuration). */
int tm_repo_cmd(const char *config, int argc, char **argv);

#endif

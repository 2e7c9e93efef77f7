/*
 * tools.c - what the pg_dump engine's rooms share: the client programs and
 * their versions, child processes, libpq sessions, connection strings,
 * object names and times.
 *
 * Passwords never travel in argv or in the agent's log: a child gets
 * PGPASSFILE pointing into a private 0700 scratch directory (a 0600 file
 * written there, removed with the directory), and messages name host, port
 * and user only.
 */
#include "agent/engines/pg_dump/dump.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int is_exec(const char *dir, const char *prog)
{
    char p[PATH_MAX + 64];
    snprintf(p, sizeof(p), "%s/%s", dir, prog);
    return access(p, X_OK) == 0;
}

int tm_dump_bindir(const char *conf_bindir, char *out, size_t cap, tm_err *err)
{
    if (conf_bindir != NULL) {
        if (!is_exec(conf_bindir, "pg_dump")) {
            return tm_err_set(err, TM_ECONFIG,
                              "no pg_dump in bindir %s (targets[].pg_dump.bindir): set it to the "
                              "directory of the PostgreSQL client programs",
                              conf_bindir);
        }
        snprintf(out, cap, "%s", conf_bindir);
        return TM_OK;
    }
    /* pg_config names the installation's program directory; popen runs it
     * through the shell with a fixed command line (no input of ours). */
    FILE *f = popen("pg_config --bindir 2>/dev/null", "r");
    char line[PATH_MAX] = "";
    if (f != NULL) {
        if (fgets(line, sizeof(line), f) == NULL) {
            line[0] = '\0';
        }
        pclose(f);
    }
    line[strcspn(line, "\r\n")] = '\0';
    if (line[0] != '/' || !is_exec(line, "pg_dump")) {
        return tm_err_set(err, TM_ECONFIG,
                          "cannot find pg_dump: `pg_config --bindir` %s%s%s; install the "
                          "PostgreSQL client of the server's major version or set "
                          "targets[].pg_dump.bindir",
                          line[0] ? "names " : "gave nothing", line, line[0] ? " without it" : "");
    }
    snprintf(out, cap, "%s", line);
    return TM_OK;
}

int tm_dump_tool_major(const char *bindir, const char *prog, int *major, tm_err *err)
{
    char cmd[PATH_MAX + 80];
    snprintf(cmd, sizeof(cmd), "%s/%s", bindir, prog);
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        return tm_err_set(err, TM_EIO, "pipe: %s", strerror(errno));
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return tm_err_set(err, TM_EIO, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        dup2(p[1], 1);
        char *const argv[] = {cmd, "--version", NULL};
        execv(cmd, argv);
        _exit(127);
    }
    close(p[1]);
    char buf[256];
    size_t len = 0;
    ssize_t n;
    while (len + 1 < sizeof(buf) && (n = read(p[0], buf + len, sizeof(buf) - 1 - len)) != 0) {
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            break;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    close(p[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    /* "pg_dump (PostgreSQL) 15.10 (Debian 15.10-0+deb12u1)" */
    const char *v = strstr(buf, ") ");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || v == NULL || !isdigit((unsigned char)v[2])) {
        buf[strcspn(buf, "\n")] = '\0';
        return tm_err_set(err, TM_ECONFIG, "%s --version: unexpected answer '%.80s'", cmd, buf);
    }
    *major = atoi(v + 2);
    return TM_OK;
}

/* A password file line: *:*:*:*:<password> with ':' and '\' escaped. */
static int write_passfile(const char *path, const char *pw, tm_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        return tm_err_set(err, TM_EIO, "create %s: %s", path, strerror(errno));
    }
    size_t n = strlen(pw);
    char *line = malloc(2 * n + 16);
    if (line == NULL) {
        close(fd);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    size_t k = (size_t)sprintf(line, "*:*:*:*:");
    for (size_t i = 0; i < n; i++) {
        if (pw[i] == ':' || pw[i] == '\\') {
            line[k++] = '\\';
        }
        line[k++] = pw[i];
    }
    line[k++] = '\n';
    ssize_t w = write(fd, line, k);
    explicit_bzero(line, k);
    free(line);
    int rc = w == (ssize_t)k && close(fd) == 0
                 ? TM_OK
                 : tm_err_set(err, TM_EIO, "write %s: %s", path, strerror(errno));
    if (w != (ssize_t)k) {
        close(fd);
    }
    return rc;
}

int tm_dump_scratch_new(const char *base, const char *password, tm_dump_scratch *s, tm_err *err)
{
    memset(s, 0, sizeof(*s));
    if (base == NULL) {
        base = getenv("TMPDIR");
    }
    if (base == NULL || base[0] != '/') {
        base = "/tmp";
    }
    int n = snprintf(s->dir, sizeof(s->dir), "%s/tidemark-pg_dump-XXXXXX", base);
    if (n < 0 || (size_t)n >= sizeof(s->dir)) {
        s->dir[0] = '\0';
        return tm_err_set(err, TM_EINVAL, "scratch directory name under %.200s too long", base);
    }
    if (mkdtemp(s->dir) == NULL) {
        int e = errno;
        s->dir[0] = '\0';
        return tm_err_set(err, e == ENOSPC ? TM_ENOSPC : TM_EIO,
                          "create a scratch directory under %s: %s", base, strerror(e));
    }
    if (password != NULL) {
        snprintf(s->passfile, sizeof(s->passfile), "%s/pgpass", s->dir);
        int rc = write_passfile(s->passfile, password, err);
        if (rc != TM_OK) {
            tm_dump_scratch_free(s);
            return rc;
        }
    }
    return TM_OK;
}

static int rm_visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

void tm_dump_scratch_free(tm_dump_scratch *s)
{
    if (s->dir[0] != '\0') {
        (void)nftw(s->dir, rm_visit, 16, FTW_DEPTH | FTW_PHYS);
    }
    s->dir[0] = s->passfile[0] = '\0';
}

/* The child's environment: the agent's, without libpq variables that
 * could redirect or authenticate it differently, plus PGPASSFILE. Built
 * before fork (the agent has threads: nothing but async-signal-safe calls
 * between fork and exec). */
static char **child_env(const tm_dump_scratch *s, const char *const *extra)
{
    size_t n = 0;
    while (environ[n] != NULL) {
        n++;
    }
    size_t ne = 0;
    while (extra != NULL && extra[ne] != NULL) {
        ne++;
    }
    char **env = calloc(n + ne + 4, sizeof(char *));
    if (env == NULL) {
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], "PG", 2) != 0) {
            env[k++] = environ[i];
        }
    }
    static __thread char pf[PATH_MAX + 32];
    if (s != NULL && s->passfile[0] != '\0') {
        snprintf(pf, sizeof(pf), "PGPASSFILE=%s", s->passfile);
        env[k++] = pf;
    }
    env[k++] = "PGCONNECT_TIMEOUT=30";
    for (size_t i = 0; i < ne; i++) {
        env[k++] = (char *)extra[i];
    }
    env[k] = NULL;
    return env;
}

int tm_dump_spawn(const char *bindir, char *const argv[], const tm_dump_scratch *s,
                  const char *const *extra_env, int want_stdout, tm_dump_child *c, tm_err *err)
{
    c->pid = -1;
    c->out_fd = -1;
    c->status = 0;
    c->err_fd = memfd_create("tidemark-stderr", MFD_CLOEXEC);
    if (c->err_fd < 0) {
        return tm_err_set(err, TM_EIO, "memfd_create: %s", strerror(errno));
    }
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", bindir, argv[0]);
    int p[2] = {-1, -1};
    if (want_stdout && pipe2(p, O_CLOEXEC) != 0) {
        close(c->err_fd);
        return tm_err_set(err, TM_EIO, "pipe: %s", strerror(errno));
    }
    char **env = child_env(s, extra_env);
    /* argv[0] is the full path: pg_dumpall finds pg_dump beside itself
     * through argv[0], and a bare name would be looked up in PATH (on
     * Debian, a wrapper in another directory). */
    size_t na = 0;
    while (argv[na] != NULL) {
        na++;
    }
    char **av = calloc(na + 1, sizeof(char *));
    if (av == NULL) {
        free(env);
        env = NULL;
    } else {
        memcpy(av, argv, na * sizeof(char *));
        av[0] = path;
    }
    int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
    pid_t parent = getpid();
    pid_t pid = env != NULL && nul >= 0 ? fork() : -1;
    if (pid == 0) {
        /* Dies with the agent: no orphan dump keeps a server session. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(126);
        }
        dup2(nul, 0);
        dup2(want_stdout ? p[1] : nul, 1);
        dup2(c->err_fd, 2);
        execve(path, av, env);
        _exit(127);
    }
    int e = errno;
    free(env);
    free(av);
    if (nul >= 0) {
        close(nul);
    }
    if (want_stdout) {
        close(p[1]);
    }
    if (pid < 0) {
        if (want_stdout) {
            close(p[0]);
        }
        close(c->err_fd);
        c->err_fd = -1;
        return tm_err_set(err, TM_EIO, "start %s: %s", path, strerror(e));
    }
    c->pid = pid;
    c->out_fd = want_stdout ? p[0] : -1;
    return TM_OK;
}

char *tm_dump_child_stderr(const tm_dump_child *c)
{
    struct stat st;
    if (c->err_fd < 0 || fstat(c->err_fd, &st) != 0) {
        return strdup("");
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (buf == NULL) {
        return NULL;
    }
    ssize_t r = pread(c->err_fd, buf, n, 0);
    buf[r > 0 ? (size_t)r : 0] = '\0';
    return buf;
}

void tm_dump_kill(tm_dump_child *c)
{
    if (c->pid <= 0) {
        return;
    }
    kill(c->pid, SIGTERM);
    for (int i = 0; i < 30; i++) {
        if (waitpid(c->pid, &c->status, WNOHANG) == c->pid) {
            c->pid = -1;
            return;
        }
        usleep(100000);
    }
    kill(c->pid, SIGKILL);
    while (waitpid(c->pid, &c->status, 0) < 0 && errno == EINTR) {
    }
    c->pid = -1;
}

/* The last two lines of a program's stderr, on one line. */
static void tail_lines(const char *s, char *out, size_t cap)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ')) {
        n--;
    }
    size_t start = n, lines = 0;
    while (start > 0 && lines < 2) {
        start--;
        if (s[start] == '\n' && ++lines == 2) {
            start++;
            break;
        }
    }
    size_t k = 0;
    for (size_t i = start; i < n && k + 1 < cap; i++) {
        out[k++] = s[i] == '\n' ? ' ' : (s[i] == '\t' ? ' ' : s[i]);
    }
    out[k] = '\0';
}

int tm_dump_wait(tm_dump_child *c, const char *prog, char **errtext, tm_err *err)
{
    if (c->out_fd >= 0) {
        close(c->out_fd);
        c->out_fd = -1;
    }
    int st = c->pid > 0 ? 0 : c->status, rc = TM_OK;
    while (c->pid > 0 && waitpid(c->pid, &st, 0) < 0 && errno == EINTR) {
    }
    c->pid = -1;
    if (errtext != NULL) {
        *errtext = tm_dump_child_stderr(c);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char *msg = tm_dump_child_stderr(c);
        char tail[360] = "";
        tail_lines(msg != NULL ? msg : "", tail, sizeof(tail));
        free(msg);
        if (WIFSIGNALED(st)) {
            rc = tm_err_set(err, TM_EIO, "%s killed by signal %d: %s", prog, WTERMSIG(st), tail);
        } else {
            rc = tm_err_set(err, WEXITSTATUS(st) == 127 ? TM_ECONFIG : TM_EIO,
                            "%s exited with %d: %s", prog, WEXITSTATUS(st),
                            WEXITSTATUS(st) == 127 ? "not found" : tail);
        }
    }
    if (c->err_fd >= 0) {
        close(c->err_fd);
        c->err_fd = -1;
    }
    return rc;
}

/* 'value' with \ and ' escaped, for a connection string. */
static int cs_add(char **buf, size_t *len, const char *key, const char *val)
{
    size_t need = *len + strlen(key) + 2 * strlen(val) + 6;
    char *nb = realloc(*buf, need);
    if (nb == NULL) {
        return -1;
    }
    *buf = nb;
    size_t k = *len;
    k += (size_t)sprintf(nb + k, "%s%s='", k ? " " : "", key);
    for (const char *p = val; *p; p++) {
        if (*p == '\\' || *p == '\'') {
            nb[k++] = '\\';
        }
        nb[k++] = *p;
    }
    nb[k++] = '\'';
    nb[k] = '\0';
    *len = k;
    return 0;
}

int tm_dump_conninfo(const tm_dump_server *s, const char *db, char **out, tm_err *err)
{
    char port[16];
    snprintf(port, sizeof(port), "%u", s->port ? s->port : 5432);
    char *b = NULL;
    size_t len = 0;
    int bad = cs_add(&b, &len, "host", s->host ? s->host : "127.0.0.1") ||
              cs_add(&b, &len, "port", port) ||
              cs_add(&b, &len, "user", s->user ? s->user : "postgres") ||
              cs_add(&b, &len, "dbname", db) ||
              cs_add(&b, &len, "sslmode", s->sslmode ? s->sslmode : "prefer") ||
              cs_add(&b, &len, "application_name", "tidemark-agent");
    if (bad) {
        free(b);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    *out = b;
    return TM_OK;
}

struct tm_dump_conn {
    PGconn *c;
};

/* The first line of libpq's message. */
static void pq_line(const char *m, char *out, size_t cap)
{
    snprintf(out, cap, "%s", m ? m : "out of memory");
    out[strcspn(out, "\n")] = '\0';
}

int tm_dump_connect(const tm_dump_server *s, const char *db, tm_dump_conn **out, tm_err *err)
{
    *out = NULL;
    char port[16];
    snprintf(port, sizeof(port), "%u", s->port ? s->port : 5432);
    const char *host = s->host ? s->host : "127.0.0.1";
    const char *user = s->user ? s->user : "postgres";
    const char *keys[] = {"host",     "port",
                          "user",     "dbname",
                          "sslmode",  "connect_timeout",
                          "password", "application_name",
                          NULL};
    const char *vals[] = {host,
                          port,
                          user,
                          db,
                          s->sslmode ? s->sslmode : "prefer",
                          "30",
                          s->password,
                          "tidemark-agent",
                          NULL};
    if (s->password == NULL) {
        keys[6] = "application_name";
        vals[6] = "tidemark-agent";
        keys[7] = vals[7] = NULL;
    }
    PGconn *pc = PQconnectdbParams(keys, vals, 0);
    if (pc == NULL || PQstatus(pc) != CONNECTION_OK) {
        char line[320];
        pq_line(pc ? PQerrorMessage(pc) : NULL, line, sizeof(line));
        /* A refused login is final (retrying will not fix a password);
         * anything else may be the network or a restarting server. */
        int auth = pc != NULL && (PQconnectionNeedsPassword(pc) || PQconnectionUsedPassword(pc) ||
                                  strstr(line, "authentication failed") != NULL ||
                                  strstr(line, "no pg_hba.conf entry") != NULL);
        int rc = tm_err_set(err, auth ? TM_EAUTH : TM_EUNAVAIL,
                            "connect to PostgreSQL at %s:%s as user %s (database %.63s): %s; %s",
                            host, port, user, db, line,
                            auth ? "check the user and its password (password_file or "
                                   "password: env:NAME) and the server's pg_hba.conf"
                                 : "check host, port and sslmode and that the server is up");
        PQfinish(pc);
        return rc;
    }
    tm_dump_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        PQfinish(pc);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    c->c = pc;
    *out = c;
    return TM_OK;
}

void tm_dump_close(tm_dump_conn *c)
{
    if (c != NULL) {
        PQfinish(c->c);
        free(c);
    }
}

static PGresult *run(tm_dump_conn *c, const char *sql, int np, const char *const *params,
                     tm_err *err)
{
    PGresult *r = PQexecParams(c->c, sql, np, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        char line[320];
        pq_line(r ? PQresultErrorMessage(r) : PQerrorMessage(c->c), line, sizeof(line));
        tm_err_set(err, PQstatus(c->c) == CONNECTION_OK ? TM_EIO : TM_EUNAVAIL,
                   "PostgreSQL: %.80s: %s", sql, line);
        PQclear(r);
        return NULL;
    }
    return r;
}

void tm_dump_list_free(char **v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++) {
        free(v[i]);
    }
    free(v);
}

int tm_dump_query_list(tm_dump_conn *c, const char *sql, int nparams, const char *const *params,
                       char ***out, size_t *n, tm_err *err)
{
    *out = NULL;
    *n = 0;
    PGresult *r = run(c, sql, nparams, params, err);
    if (r == NULL) {
        return err->code;
    }
    size_t rows = (size_t)PQntuples(r);
    char **v = calloc(rows + 1, sizeof(char *));
    int rc = v == NULL ? tm_err_set(err, TM_ENOMEM, "out of memory") : TM_OK;
    for (size_t i = 0; rc == TM_OK && i < rows; i++) {
        if ((v[i] = strdup(PQgetvalue(r, (int)i, 0))) == NULL) {
            rc = tm_err_set(err, TM_ENOMEM, "out of memory");
        }
    }
    PQclear(r);
    if (rc != TM_OK) {
        tm_dump_list_free(v, rows);
        return rc;
    }
    *out = v;
    *n = rows;
    return TM_OK;
}

int tm_dump_query_value(tm_dump_conn *c, const char *sql, int nparams, const char *const *params,
                        char **out, tm_err *err)
{
    *out = NULL;
    PGresult *r = run(c, sql, nparams, params, err);
    if (r == NULL) {
        return err->code;
    }
    int rc = TM_OK;
    if (PQntuples(r) < 1 || PQnfields(r) < 1) {
        rc = tm_err_set(err, TM_ENOENT, "PostgreSQL: %.80s: no row", sql);
    } else if ((*out = strdup(PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0))) == NULL) {
        rc = tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    PQclear(r);
    return rc;
}

int tm_dump_exec(tm_dump_conn *c, const char *sql, tm_err *err)
{
    PGresult *r = run(c, sql, 0, NULL, err);
    if (r == NULL) {
        return err->code;
    }
    PQclear(r);
    return TM_OK;
}

char *tm_dump_ident(tm_dump_conn *c, const char *name)
{
    char *q = PQescapeIdentifier(c->c, name, strlen(name));
    char *out = q != NULL ? strdup(q) : NULL;
    PQfreemem(q);
    return out;
}

void tm_dump_escape(const char *db, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)db; *p && k + 4 < cap; p++) {
        if (isalnum(*p) || *p == '_' || *p == '-') {
            out[k++] = (char)*p;
        } else {
            out[k++] = '%';
            out[k++] = hex[*p >> 4];
            out[k++] = hex[*p & 15];
        }
    }
    out[k] = '\0';
}

void tm_dump_obj_name(const char *db, char *out, size_t cap)
{
    char esc[200];
    tm_dump_escape(db, esc, sizeof(esc));
    snprintf(out, cap, "db/%s.dump", esc);
}

int tm_dump_unescape(const char *esc, char *out, size_t cap)
{
    size_t k = 0;
    for (const char *p = esc; *p; p++) {
        if (k + 1 >= cap) {
            return TM_EINVAL;
        }
        if (*p == '%') {
            if (!isxdigit((unsigned char)p[1]) || !isxdigit((unsigned char)p[2])) {
                return TM_EINVAL;
            }
            char h[3] = {p[1], p[2], 0};
            out[k++] = (char)strtol(h, NULL, 16);
            p += 2;
        } else if (isalnum((unsigned char)*p) || *p == '_' || *p == '-') {
            out[k++] = *p;
        } else {
            return TM_EINVAL;
        }
    }
    out[k] = '\0';
    return k > 0 && memchr(out, '\0', k) == NULL ? TM_OK : TM_EINVAL;
}

int tm_dump_time_parse(const char *s, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    int used = 0;
    if (s == NULL || sscanf(s, "%4d-%2d-%2d%*[ T]%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon,
                            &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &used) != 6) {
        return TM_EINVAL;
    }
    const char *z = s + used;
    if (*z == '.') { /* a fraction: the second it is in counts whole */
        z++;
        while (isdigit((unsigned char)*z)) {
            z++;
        }
    }
    while (*z == ' ') {
        z++;
    }
    if (*z != '\0' && strcmp(z, "Z") != 0 && strcmp(z, "+00") != 0 && strcmp(z, "+00:00") != 0 &&
        strcmp(z, "UTC") != 0) {
        return TM_EINVAL;
    }
    if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60) {
        return TM_EINVAL;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = (int64_t)timegm(&tm);
    return TM_OK;
}

const tm_dump_target_conf *tm_dump_conf_of(const tm_agent_conf *conf, const char *target)
{
    for (size_t i = 0; conf != NULL && target != NULL && i < conf->n_targets; i++) {
        const tm_dump_target_conf *d = tm_dump_target(&conf->targets[i]);
        if (d != NULL && strcmp(conf->targets[i].name, target) == 0) {
            return d;
        }
    }
    return NULL;
}

void tm_dump_result_extra(Tidemark__TaskResult *r, const char *key, const char *fmt, ...)
{
    Tidemark__KeyValue **nv = realloc(r->extra, (r->n_extra + 1) * sizeof(*nv));
    if (nv == NULL) {
        return;
    }
    r->extra = nv;
    Tidemark__KeyValue *e = malloc(sizeof(*e));
    if (e == NULL) {
        return;
    }
    tidemark__key_value__init(e);
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&e->value, fmt, ap);
    va_end(ap);
    e->key = strdup(key);
    if (n < 0 || e->key == NULL) {
        free(e->key);
        free(n < 0 ? NULL : e->value);
        free(e);
        return;
    }
    r->extra[r->n_extra++] = e;
}

/*
 * tm_aof_tool - drive the Redis engine's AOF blocks (aof_tail, aof_truncate,
 * aof_manifest, aof_config) from tests, the lag benchmark and by hand. It
 * plays the shipper and the restore writer the agent will provide: ranges
 * go to a directory, a restore comes out of one.
 *
 *   tm_aof_tool tail AOFDIR SHIPDIR [--interval-ms N] [--max-range N] [--once]
 *       follow AOFDIR until SHIPDIR/stop exists (then one last poll). Every
 *       range is a file SHIPDIR/r<NNNNNN> plus a line in SHIPDIR/ranges.log:
 *         n=N type=b|i file=F seq=S start=A end=B first_ts=T1 last_ts=T2
 *         bytes=N final=0|1 torn=N shipped_ms=MS
 *       each changed manifest SHIPDIR/m<NNNNNN>; SHIPDIR/state holds
 *       "position=... base=... timestamps=-1|0|1 ranges=N" after each poll.
 *       A restart resumes after the last whole line of ranges.log. A gap
 *       (a file lost unshipped) goes to stderr and SHIPDIR/gaps.
 *   tm_aof_tool truncate SHIPDIR T OUTDIR [--manifest NAME]
 *       restore to unix time T from shipped ranges: the newest shipped base
 *       whose time is <= T, its incr files assembled from their ranges
 *       (gap-checked), cut at T, written to OUTDIR (an appendonlydir).
 *   tm_aof_tool truncate-dir AOFDIR T OUTDIR
 *       the same from a live AOF directory's manifest (T = -1: no cut).
 *   tm_aof_tool manifest FILE     parse, print back (exit 1 + message if bad)
 *   tm_aof_tool config HOST PORT  "mode=pitr|snapshot-only appendonly=.. ..."
 *
 * Exit: 0 ok, 1 error (message on stderr), 2 usage.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/engines/redis/aof_config.h"
#include "agent/engines/redis/aof_manifest.h"
#include "agent/engines/redis/aof_tail.h"
#include "agent/engines/redis/aof_truncate.h"
#include "common/util.h"

static void usage(void)
{
    fprintf(stderr, "usage: tm_aof_tool tail AOFDIR SHIPDIR [--interval-ms N] [--max-range N] "
                    "[--once] | truncate SHIPDIR T OUTDIR [--manifest NAME] | truncate-dir "
                    "AOFDIR T OUTDIR | manifest FILE | config HOST PORT\n");
    exit(2);
}

static int die(const tm_err *err)
{
    fprintf(stderr, "error %s: %s\n", tm_strerror(err->code), err->msg);
    return 1;
}

/* ---- tail ---- */

typedef struct shipper {
    const char *dir;
    FILE *log;
    int n;  /* ranges shipped (persisted in state) */
    int fd; /* the range file being written */
} shipper;

static int write_all(int fd, const void *buf, size_t len, tm_err *err)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            return tm_err_set(err, tm_err_from_errno(errno), "write: %s", strerror(errno));
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int to_fd(void *arg, const void *buf, size_t len, tm_err *err)
{
    return write_all(*(int *)arg, buf, len, err);
}

static int ship_range(void *arg, const tm_aof_range *r, tm_err *err)
{
    shipper *s = arg;
    char path[4096];
    snprintf(path, sizeof(path), "%s/r%06d", s->dir, s->n);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return tm_err_set(err, TM_EIO, "open %s: %s", path, strerror(errno));
    }
    int rc = tm_aof_range_copy(r, to_fd, &fd, err);
    if (rc == 0 && fsync(fd) != 0) {
        rc = tm_err_set(err, TM_EIO, "fsync %s: %s", path, strerror(errno));
    }
    close(fd);
    if (rc != 0) {
        return rc;
    }
    fprintf(s->log,
            "n=%d type=%c file=%s seq=%" PRId64 " start=%" PRIu64 " end=%" PRIu64
            " first_ts=%" PRId64 " last_ts=%" PRId64 " bytes=%" PRIu64 " final=%d torn=%" PRIu64
            " shipped_ms=%" PRId64 "\n",
            s->n, (char)r->type, r->file, r->seq, r->start, r->end, r->first_ts, r->last_ts,
            r->bytes, r->final, r->torn, tm_now_ms());
    fflush(s->log);
    s->n++;
    return 0;
}

static int ship_manifest(void *arg, const char *text, size_t len, tm_err *err)
{
    shipper *s = arg;
    char path[4096];
    snprintf(path, sizeof(path), "%s/m%06d", s->dir, s->n);
    return tm_file_write_atomic(path, text, len, 0600, err);
}

/* A gap: said on stderr and recorded in SHIPDIR/gaps (the agent alerts). */
static int ship_gap(void *arg, const char *what, tm_err *err)
{
    shipper *s = arg;
    char path[4096];
    snprintf(path, sizeof(path), "%s/gaps", s->dir);
    FILE *f = fopen(path, "a");
    if (f == NULL) {
        return tm_err_set(err, TM_EIO, "open %s: %s", path, strerror(errno));
    }
    fprintf(f, "%s\n", what);
    fclose(f);
    fprintf(stderr, "%s\n", what);
    return 0;
}

static int save_state(shipper *s, tm_aof_tail *t, tm_err *err)
{
    char path[4096], text[2048];
    snprintf(path, sizeof(path), "%s/state", s->dir);
    int n = snprintf(text, sizeof(text), "position=%s base=%s timestamps=%d ranges=%d\n",
                     tm_aof_tail_position(t), tm_aof_tail_base(t), tm_aof_tail_timestamps(t), s->n);
    return tm_file_write_atomic(path, text, (size_t)n, 0600, err);
}

/* "key=value" from the state file, or "" */
static void state_field(const char *state, const char *key, char *out, size_t cap)
{
    out[0] = '\0';
    char pat[64];
    snprintf(pat, sizeof(pat), "%s=", key);
    const char *p = strstr(state, pat);
    if (p != NULL) {
        p += strlen(pat);
        size_t n = strcspn(p, " \n");
        snprintf(out, cap, "%.*s", (int)n, p);
    }
}

static int cmd_tail(int argc, char **argv)
{
    if (argc < 4) {
        usage();
    }
    int interval = 100, once = 0;
    tm_aof_tail_opts o = {.dir = argv[2]};
    shipper s = {.dir = argv[3], .fd = -1};
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--interval-ms") == 0 && i + 1 < argc) {
            interval = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--max-range") == 0 && i + 1 < argc) {
            o.max_range = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--once") == 0) {
            once = 1;
        } else {
            usage();
        }
    }
    tm_err err = {0};
    if (tm_mkdir_p(s.dir, 0700, &err) != 0) {
        return die(&err);
    }
    /* Resume from ranges.log: a line is written after its range file is
     * synced, so the last whole line is the last range shipped (a torn last
     * line, from a kill mid-write, is dropped and its range shipped again). */
    char path[4096], pos[TM_AOF_POS_MAX + 40] = "", base[TM_AOF_NAME_MAX + 1] = "";
    char *old = NULL;
    size_t olen = 0;
    snprintf(path, sizeof(path), "%s/ranges.log", s.dir);
    if (tm_file_read(path, &old, &olen, NULL) == 0) {
        while (olen > 0 && old[olen - 1] != '\n') {
            olen--;
        }
        if (truncate(path, (off_t)olen) != 0) {
            fprintf(stderr, "truncate %s: %s\n", path, strerror(errno));
            return 1;
        }
        old[olen] = '\0';
        for (char *line = old; *line != '\0';) {
            char *nl = strchr(line, '\n');
            *nl = '\0';
            char type[4], file[TM_AOF_NAME_MAX + 1], end[32], last_ts[32];
            state_field(line, "last_ts", last_ts, sizeof(last_ts));
            o.last_ts = strtoll(last_ts, NULL, 10);
            state_field(line, "type", type, sizeof(type));
            state_field(line, "file", file, sizeof(file));
            state_field(line, "end", end, sizeof(end));
            if (type[0] == 'b') {
                snprintf(base, sizeof(base), "%s", file);
            } else {
                snprintf(pos, sizeof(pos), "%s:%s", file, end);
            }
            s.n++;
            line = nl + 1;
        }
        o.position = pos;
        o.base = base;
    }
    free(old);
    snprintf(path, sizeof(path), "%s/ranges.log", s.dir);
    s.log = fopen(path, "a");
    if (s.log == NULL) {
        fprintf(stderr, "open %s: %s\n", path, strerror(errno));
        return 1;
    }
    tm_aof_tail *t = NULL;
    if (tm_aof_tail_new(&o, &t, &err) != 0) {
        return die(&err);
    }
    tm_aof_tail_cbs cbs = {
        .range = ship_range, .manifest = ship_manifest, .gap = ship_gap, .arg = &s};
    char stop[4096];
    snprintf(stop, sizeof(stop), "%s/stop", s.dir);
    int rc = 0;
    for (;;) {
        int last = access(stop, F_OK) == 0 || once;
        int n = 0;
        tm_err_clear(&err);
        rc = tm_aof_tail_poll(t, &cbs, &n, &err);
        if (rc != 0) {
            /* A gap or a transient error: say it, go on (the agent alerts). */
            fprintf(stderr, "poll: %s %s\n", tm_strerror(rc), err.msg);
            fflush(stderr);
        }
        if (save_state(&s, t, &err) != 0) {
            rc = die(&err);
            break;
        }
        if (last) {
            break;
        }
        usleep((useconds_t)interval * 1000);
    }
    tm_aof_tail_free(t);
    fclose(s.log);
    return rc != 0 ? 1 : 0;
}

/* ---- truncate ---- */

typedef struct rng {
    char type;
    char file[TM_AOF_NAME_MAX + 1];
    int64_t seq;
    uint64_t start, end;
    int64_t last_ts;
    int n;
} rng;

/* A source reading its pieces (range files, or one file) one after another. */
typedef struct piece_src {
    char **paths;
    int n, cur, fd;
} piece_src;

static int piece_read(void *arg, void *buf, size_t cap, size_t *got, tm_err *err)
{
    piece_src *p = arg;
    *got = 0;
    while (p->cur < p->n) {
        if (p->fd < 0) {
            p->fd = open(p->paths[p->cur], O_RDONLY | O_CLOEXEC);
            if (p->fd < 0) {
                return tm_err_set(err, TM_EIO, "open %s: %s", p->paths[p->cur], strerror(errno));
            }
        }
        ssize_t n = read(p->fd, buf, cap);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return tm_err_set(err, TM_EIO, "read %s: %s", p->paths[p->cur], strerror(errno));
        }
        if (n > 0) {
            *got = (size_t)n;
            return 0;
        }
        close(p->fd);
        p->fd = -1;
        p->cur++;
    }
    return 0;
}

typedef struct dir_sink {
    const char *dir;
    int fd;
    char path[4096];
} dir_sink;

static int sink_open(void *arg, const char *name, tm_err *err)
{
    dir_sink *d = arg;
    snprintf(d->path, sizeof(d->path), "%s/%s", d->dir, name);
    d->fd = open(d->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (d->fd < 0) {
        return tm_err_set(err, TM_EIO, "create %s: %s", d->path, strerror(errno));
    }
    return 0;
}

static int sink_write(void *arg, const void *buf, size_t len, tm_err *err)
{
    return write_all(((dir_sink *)arg)->fd, buf, len, err);
}

static int sink_truncate(void *arg, uint64_t len, tm_err *err)
{
    dir_sink *d = arg;
    if (ftruncate(d->fd, (off_t)len) != 0 || lseek(d->fd, 0, SEEK_END) < 0) {
        return tm_err_set(err, TM_EIO, "truncate %s: %s", d->path, strerror(errno));
    }
    return 0;
}

static int sink_close(void *arg, tm_err *err)
{
    dir_sink *d = arg;
    int rc =
        fsync(d->fd) != 0 ? tm_err_set(err, TM_EIO, "fsync %s: %s", d->path, strerror(errno)) : 0;
    close(d->fd);
    d->fd = -1;
    return rc;
}

static void print_result(const tm_aof_truncate_result *r, const char *base)
{
    printf("base=%s kept_incrs=%zu dropped_incrs=%zu cut=%d cut_file=%s cut_offset=%" PRIu64
           " cut_ts=%" PRId64 " last_ts=%" PRId64 " torn=%" PRIu64 " multi_cut=%" PRIu64
           " bytes=%" PRIu64 " annotations=%" PRIu64 "\n",
           base, r->kept_incrs, r->dropped_incrs, r->cut, r->cut_file, r->cut_offset, r->cut_ts,
           r->last_ts, r->torn, r->multi_cut, r->bytes, r->annotations);
}

static int load_ranges(const char *dir, rng **out, int *n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/ranges.log", dir);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "open %s: %s\n", path, strerror(errno));
        return -1;
    }
    int cap = 1024;
    *out = malloc(sizeof(rng) * (size_t)cap);
    *n = 0;
    char line[1024];
    while (fgets(line, sizeof(line), f) != NULL) {
        rng r = {0};
        char file[TM_AOF_NAME_MAX + 1];
        if (sscanf(line,
                   "n=%d type=%c file=%255s seq=%" SCNd64 " start=%" SCNu64 " end=%" SCNu64
                   " first_ts=%*d last_ts=%" SCNd64,
                   &r.n, &r.type, file, &r.seq, &r.start, &r.end, &r.last_ts) != 7) {
            fprintf(stderr, "bad line in ranges.log: %s", line);
            fclose(f);
            return -1;
        }
        snprintf(r.file, sizeof(r.file), "%s", file);
        if (*n == cap) {
            cap *= 2;
            *out = realloc(*out, sizeof(rng) * (size_t)cap);
        }
        (*out)[(*n)++] = r;
    }
    fclose(f);
    return 0;
}

/* The lowest incr seq listed with base in any shipped manifest; 0 = none. */
static int64_t chain_start(const char *dir, const char *base)
{
    DIR *d = opendir(dir);
    int64_t lo = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] != 'm') {
            continue;
        }
        char path[4096], *text = NULL;
        size_t len = 0;
        tm_aof_manifest *m = NULL;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (tm_file_read(path, &text, &len, NULL) != 0) {
            continue;
        }
        if (tm_aof_manifest_parse(text, len, &m, NULL) == 0) {
            const tm_aof_file *b = tm_aof_manifest_base(m);
            const tm_aof_file *inc[256];
            size_t ni = tm_aof_manifest_incrs(m, inc, 256);
            if (b != NULL && strcmp(b->name, base) == 0 && ni > 0 && ni <= 256 &&
                (lo == 0 || inc[0]->seq < lo)) {
                lo = inc[0]->seq;
            }
            tm_aof_manifest_free(m);
        }
        free(text);
    }
    if (d != NULL) {
        closedir(d);
    }
    return lo;
}

static int cmp_rng(const void *a, const void *b)
{
    const rng *x = a, *y = b;
    if (x->seq != y->seq) {
        return x->seq < y->seq ? -1 : 1;
    }
    return x->start < y->start ? -1 : x->start > y->start ? 1 : 0;
}

static int cmd_truncate(int argc, char **argv)
{
    if (argc < 5) {
        usage();
    }
    const char *ship = argv[2], *outdir = argv[4];
    int64_t target = strtoll(argv[3], NULL, 10);
    const char *mname = "appendonly.aof.manifest";
    for (int i = 5; i < argc; i++) {
        if (strcmp(argv[i], "--manifest") == 0 && i + 1 < argc) {
            mname = argv[++i];
        } else {
            usage();
        }
    }
    rng *rs = NULL;
    int n = 0;
    if (load_ranges(ship, &rs, &n) != 0) {
        return 1;
    }
    /* The newest base old enough for the target. */
    const rng *base = NULL;
    for (int i = 0; i < n; i++) {
        if (rs[i].type == 'b' && rs[i].last_ts <= target &&
            (base == NULL || rs[i].seq > base->seq)) {
            base = &rs[i];
        }
    }
    if (base == NULL) {
        fprintf(stderr, "no shipped base is from %" PRId64 " or before\n", target);
        return 1;
    }
    int64_t first = chain_start(ship, base->file);
    if (first == 0) {
        fprintf(stderr, "no shipped manifest lists the base %s\n", base->file);
        return 1;
    }
    /* Incr ranges of the chain, by file then offset; each file gap-free. */
    rng *inc = malloc(sizeof(rng) * (size_t)n);
    int ni = 0;
    for (int i = 0; i < n; i++) {
        if (rs[i].type == 'i' && rs[i].seq >= first && rs[i].end > rs[i].start) {
            inc[ni++] = rs[i];
        }
    }
    qsort(inc, (size_t)ni, sizeof(rng), cmp_rng);
    tm_aof_source srcs[256];
    piece_src ps[256];
    int ns = 0;
    char **paths = calloc((size_t)ni + 1, sizeof(char *));
    for (int i = 0; i < ni; i++) {
        int newfile = i == 0 || inc[i].seq != inc[i - 1].seq;
        uint64_t want = newfile ? 0 : inc[i - 1].end;
        if (newfile && i > 0 && inc[i].seq != inc[i - 1].seq + 1) {
            fprintf(stderr, "gap: no shipped bytes of incr seq %" PRId64 "\n", inc[i - 1].seq + 1);
            return 1;
        }
        if (inc[i].start != want) {
            fprintf(stderr,
                    "gap in %s: shipped up to %" PRIu64 ", next range starts at %" PRIu64 "\n",
                    inc[i].file, want, inc[i].start);
            return 1;
        }
        paths[i] = malloc(4200);
        snprintf(paths[i], 4200, "%s/r%06d", ship, inc[i].n);
        if (newfile) {
            if (ns == 256) {
                fprintf(stderr, "more than 256 incr files\n");
                return 1;
            }
            ps[ns] = (piece_src){.paths = &paths[i], .n = 0, .fd = -1};
            srcs[ns] = (tm_aof_source){
                .name = inc[i].file, .seq = inc[i].seq, .read = piece_read, .arg = &ps[ns]};
            ns++;
        }
        ps[ns - 1].n++;
    }
    char bpath[4200];
    snprintf(bpath, sizeof(bpath), "%s/r%06d", ship, base->n);
    char *bp[1] = {bpath};
    piece_src bsrc = {.paths = bp, .n = 1, .fd = -1};
    tm_aof_source bs = {.name = base->file, .seq = base->seq, .read = piece_read, .arg = &bsrc};
    tm_err err = {0};
    if (tm_mkdir_p(outdir, 0755, &err) != 0) {
        return die(&err);
    }
    dir_sink d = {.dir = outdir, .fd = -1};
    tm_aof_sink sink = {sink_open, sink_write, sink_truncate, sink_close, &d};
    tm_aof_truncate_opts o = {.target = target, .manifest_name = mname, .base_ts = base->last_ts};
    tm_aof_truncate_result res;
    int rc = tm_aof_truncate(&o, &bs, srcs, (size_t)ns, &sink, &res, &err);
    if (rc == 0) {
        print_result(&res, base->file);
    }
    for (int i = 0; i < ni; i++) {
        free(paths[i]);
    }
    free(paths);
    free(inc);
    free(rs);
    return rc != 0 ? die(&err) : 0;
}

static int cmd_truncate_dir(int argc, char **argv)
{
    if (argc != 5) {
        usage();
    }
    const char *aofdir = argv[2], *outdir = argv[4];
    int64_t target = strtoll(argv[3], NULL, 10);
    DIR *dd = opendir(aofdir);
    char mname[TM_AOF_NAME_MAX + 1] = "";
    struct dirent *e;
    while (dd != NULL && (e = readdir(dd)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l > 9 && strcmp(e->d_name + l - 9, ".manifest") == 0) {
            snprintf(mname, sizeof(mname), "%s", e->d_name);
        }
    }
    if (dd != NULL) {
        closedir(dd);
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", aofdir, mname);
    tm_aof_manifest *m = NULL;
    tm_err err = {0};
    if (tm_aof_manifest_load(path, &m, &err) != 0) {
        return die(&err);
    }
    const tm_aof_file *b = tm_aof_manifest_base(m);
    const tm_aof_file *inc[256];
    size_t ni = tm_aof_manifest_incrs(m, inc, 256);
    if (ni > 256) {
        fprintf(stderr, "too many incr files\n");
        return 1;
    }
    static char pbuf[257][4200];
    char *pp[257];
    piece_src ps[257];
    tm_aof_source srcs[257];
    for (size_t i = 0; i <= ni; i++) {
        const tm_aof_file *f = i == 0 ? b : inc[i - 1];
        if (f == NULL) {
            continue;
        }
        snprintf(pbuf[i], sizeof(pbuf[i]), "%s/%s", aofdir, f->name);
        pp[i] = pbuf[i];
        ps[i] = (piece_src){.paths = &pp[i], .n = 1, .fd = -1};
        srcs[i] =
            (tm_aof_source){.name = f->name, .seq = f->seq, .read = piece_read, .arg = &ps[i]};
    }
    if (tm_mkdir_p(outdir, 0755, &err) != 0) {
        return die(&err);
    }
    dir_sink d = {.dir = outdir, .fd = -1};
    tm_aof_sink sink = {sink_open, sink_write, sink_truncate, sink_close, &d};
    tm_aof_truncate_opts o = {.target = target < 0 ? INT64_MAX : target, .manifest_name = mname};
    tm_aof_truncate_result res;
    int rc = tm_aof_truncate(&o, b != NULL ? &srcs[0] : NULL, &srcs[1], ni, &sink, &res, &err);
    const char *bn = b != NULL ? b->name : "";
    if (rc != 0) {
        tm_aof_manifest_free(m);
        return die(&err);
    }
    print_result(&res, bn);
    tm_aof_manifest_free(m);
    return 0;
}

static int cmd_manifest(const char *path)
{
    tm_aof_manifest *m = NULL;
    tm_err err = {0};
    if (tm_aof_manifest_load(path, &m, &err) != 0) {
        return die(&err);
    }
    char *text = NULL;
    size_t len = 0;
    if (tm_aof_manifest_format(m, &text, &len, &err) != 0) {
        tm_aof_manifest_free(m);
        return die(&err);
    }
    fwrite(text, 1, len, stdout);
    free(text);
    tm_aof_manifest_free(m);
    return 0;
}

static int cmd_config(const char *host, const char *port)
{
    tm_redis_conn_opts o = {.host = host, .port = atoi(port)};
    tm_aof_config c;
    tm_redis_verdict v;
    tm_err err = {0};
    if (tm_aof_config_get(&o, &c, &v, &err) != 0) {
        return die(&err);
    }
    printf("mode=%s appendonly=%d timestamps=%d rdb_preamble=%d aof_dir=%s manifest=%s\n",
           tm_aof_config_mode(&c), c.appendonly, c.timestamps, c.rdb_preamble, c.aof_dir,
           c.manifest);
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage();
    }
    if (strcmp(argv[1], "tail") == 0) {
        return cmd_tail(argc, argv);
    }
    if (strcmp(argv[1], "truncate") == 0) {
        return cmd_truncate(argc, argv);
    }
    if (strcmp(argv[1], "truncate-dir") == 0) {
        return cmd_truncate_dir(argc, argv);
    }
    if (strcmp(argv[1], "manifest") == 0 && argc == 3) {
        return cmd_manifest(argv[2]);
    }
    if (strcmp(argv[1], "config") == 0 && argc == 4) {
        return cmd_config(argv[2], argv[3]);
    }
    usage();
    return 2;
}

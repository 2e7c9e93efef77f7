/*
 * watch.c - the commit observer (see watch.h): a thread reading the
 * wal-index header of the "-shm" file, a bounded table of what it saw, and
 * the timing of the shipper's commits from it.
 */
#include "agent/engines/sqlite/watch.h"
#include "agent/engines/sqlite/wal.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

/* The wal-index header (SQLite's WalIndexHdr), host byte order except the
 * salts, which are the WAL header's bytes. */
#define SHM_HDR 48
#define SHM_VERSION 3007000u

struct tm_sqlite_watch {
    tm_sqlite_watch_opts o;
    char shm[PATH_MAX + 8], walname[NAME_MAX + 1];
    int shm_fd;
    uint64_t shm_ino;
    int64_t shm_checked_ms;
    int ino_fd, stop_fd;
    pthread_t th;
    int running;
    tm_sqlite_seen last; /* the newest recorded (the thread's own) */
    pthread_mutex_t mu;  /* the table: held only to copy in or out */
    tm_sqlite_seen ring[TM_SQLITE_WATCH_CAP];
    uint64_t count;
};

static uint32_t host32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static int host_big_endian(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 0;
}

void tm_sqlite_watch_note(tm_sqlite_watch *w, const tm_sqlite_seen *seen)
{
    pthread_mutex_lock(&w->mu);
    w->ring[w->count % TM_SQLITE_WATCH_CAP] = *seen;
    w->count++;
    pthread_mutex_unlock(&w->mu);
}

uint64_t tm_sqlite_watch_count(tm_sqlite_watch *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t n = w->count;
    pthread_mutex_unlock(&w->mu);
    return n;
}

/* The "-shm" file open, and the same file as the path names (checked at
 * most every 200 ms: it changes only when the database is reopened). */
static int shm_open_fd(tm_sqlite_watch *w)
{
    int64_t now = tm_now_ms();
    if (w->shm_fd >= 0 && now - w->shm_checked_ms < 200) {
        return w->shm_fd;
    }
    w->shm_checked_ms = now;
    struct stat st;
    if (stat(w->shm, &st) != 0) {
        if (w->shm_fd >= 0) {
            close(w->shm_fd);
            w->shm_fd = -1;
        }
        return -1;
    }
    if (w->shm_fd >= 0 && (uint64_t)st.st_ino == w->shm_ino) {
        return w->shm_fd;
    }
    if (w->shm_fd >= 0) {
        close(w->shm_fd);
    }
    w->shm_fd = open(w->shm, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    w->shm_ino = (uint64_t)st.st_ino;
    return w->shm_fd;
}

int tm_sqlite_watch_look(tm_sqlite_watch *w)
{
    int fd = shm_open_fd(w);
    if (fd < 0) {
        return 0;
    }
    uint8_t b[2 * SHM_HDR];
    size_t got = 0;
    if (tm_sqlite_wal_pread(fd, b, sizeof(b), 0, &got, NULL) != TM_OK || got < sizeof(b)) {
        return 0; /* not there yet, or truncated: nothing to say */
    }
    /* Taken after the read: the commit was visible by then. */
    int64_t now = tm_now_ms();
    if (memcmp(b, b + SHM_HDR, SHM_HDR) != 0 || b[12] != 1 || host32(b) != SHM_VERSION) {
        return 0; /* being rewritten, or not initialised */
    }
    uint32_t ck[2] = {0, 0};
    tm_sqlite_wal_cksum(host_big_endian(), b, 40, ck);
    if (ck[0] != host32(b + 40) || ck[1] != host32(b + 44)) {
        return 0;
    }
    tm_sqlite_seen s = {.salt1 = tm_sqlite_wal_be32(b + 32),
                        .salt2 = tm_sqlite_wal_be32(b + 36),
                        .frame = host32(b + 16),
                        .cksum1 = host32(b + 24),
                        .cksum2 = host32(b + 28),
                        .time_ms = now};
    if (s.frame == 0 ||
        (s.salt1 == w->last.salt1 && s.salt2 == w->last.salt2 && s.frame == w->last.frame &&
         s.cksum1 == w->last.cksum1 && s.cksum2 == w->last.cksum2)) {
        return 0;
    }
    w->last = s;
    tm_sqlite_watch_note(w, &s);
    return 1;
}

/* 1 when the inotify events read name the WAL file (or some were lost). */
static int drain_events(tm_sqlite_watch *w)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    int hit = 0;
    for (;;) {
        ssize_t n = read(w->ino_fd, buf, sizeof(buf));
        if (n <= 0) {
            return hit;
        }
        for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= n;) {
            const struct inotify_event *ev = (const struct inotify_event *)(buf + off);
            if ((ev->mask & IN_Q_OVERFLOW) || (ev->len > 0 && strcmp(ev->name, w->walname) == 0)) {
                hit = 1;
            }
            off += (ssize_t)sizeof(struct inotify_event) + ev->len;
        }
    }
}

static void *run(void *arg)
{
    tm_sqlite_watch *w = arg;
    int64_t written = INT64_MIN / 2; /* when the WAL was last written */
    for (;;) {
        /* After a write the header follows once the commit is synced: read
         * every ms at first, then less often (a tenth of the wait so far),
         * so a slow fsync costs few wakeups and the time stays within ~10%
         * of it. Idle: inotify says when; the poll is a safety net. */
        int64_t since = tm_now_ms() - written;
        int timeout = since < (int64_t)w->o.hot_ms ? 1 + (int)(since / 10)
                      : w->ino_fd >= 0             ? (int)w->o.idle_ms
                                                   : (int)w->o.poll_ms;
        struct pollfd p[2] = {{.fd = w->stop_fd, .events = POLLIN},
                              {.fd = w->ino_fd, .events = POLLIN}};
        int np = w->ino_fd >= 0 ? 2 : 1;
        if (poll(p, (nfds_t)np, timeout) < 0 && errno != EINTR) {
            break;
        }
        if (p[0].revents != 0) {
            break;
        }
        int wrote = np == 2 && p[1].revents != 0 && drain_events(w);
        if (wrote) {
            written = tm_now_ms();
        }
        if (tm_sqlite_watch_look(w) && !wrote) {
            /* The commit of the last write is seen: wait for the next
             * write. (A write drained with this look may be of a commit
             * still to come: then it stays hot.) */
            written = INT64_MIN / 2;
        }
    }
    return NULL;
}

int tm_sqlite_watch_new(const char *db, const tm_sqlite_watch_opts *o, tm_sqlite_watch **out,
                        tm_err *err)
{
    tm_sqlite_watch *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return tm_err_set(err, TM_ENOMEM, "commit observer");
    }
    if (o != NULL) {
        w->o = *o;
    }
    if (w->o.poll_ms == 0) {
        w->o.poll_ms = 20;
    }
    if (w->o.hot_ms == 0) {
        w->o.hot_ms = 250;
    }
    if (w->o.idle_ms == 0) {
        w->o.idle_ms = 250;
    }
    w->shm_fd = w->ino_fd = w->stop_fd = -1;
    pthread_mutex_init(&w->mu, NULL);
    char d[PATH_MAX], base[PATH_MAX];
    if ((size_t)snprintf(w->shm, sizeof(w->shm), "%s-shm", db) >= sizeof(w->shm) ||
        (size_t)snprintf(d, sizeof(d), "%s", db) >= sizeof(d) || strlen(db) + 1 > sizeof(base)) {
        tm_sqlite_watch_free(w);
        return tm_err_set(err, TM_EINVAL, "commit observer: path too long: %s", db);
    }
    snprintf(base, sizeof(base), "%s", db);
    if ((size_t)snprintf(w->walname, sizeof(w->walname), "%s-wal", basename(base)) >=
        sizeof(w->walname)) {
        tm_sqlite_watch_free(w);
        return tm_err_set(err, TM_EINVAL, "commit observer: file name too long: %s", db);
    }
    if (w->o.no_thread) {
        *out = w;
        return TM_OK;
    }
    /* The directory, not the WAL file: the WAL comes and goes (removed by
     * the last connection, created by the next). Without inotify: polls. */
    w->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->ino_fd >= 0 && inotify_add_watch(w->ino_fd, dirname(d), IN_MODIFY) < 0) {
        close(w->ino_fd);
        w->ino_fd = -1;
    }
    w->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->stop_fd < 0) {
        int e = errno;
        tm_sqlite_watch_free(w);
        return tm_err_set(err, TM_EIO, "commit observer: eventfd: %s", strerror(e));
    }
    int rc = pthread_create(&w->th, NULL, run, w);
    if (rc != 0) {
        tm_sqlite_watch_free(w);
        return tm_err_set(err, TM_EIO, "commit observer: thread: %s", strerror(rc));
    }
    w->running = 1;
    *out = w;
    return TM_OK;
}

void tm_sqlite_watch_free(tm_sqlite_watch *w)
{
    if (w == NULL) {
        return;
    }
    if (w->running) {
        uint64_t one = 1;
        if (write(w->stop_fd, &one, sizeof(one)) != (ssize_t)sizeof(one)) {
            /* an eventfd write of 1 does not fail; the join below would wait */
        }
        pthread_join(w->th, NULL);
    }
    if (w->stop_fd >= 0) {
        close(w->stop_fd);
    }
    if (w->ino_fd >= 0) {
        close(w->ino_fd);
    }
    if (w->shm_fd >= 0) {
        close(w->shm_fd);
    }
    pthread_mutex_destroy(&w->mu);
    free(w);
}

/* The commit at frame f among c[0..n), by binary search: its index or -1. */
static long find_frame(const tm_sqlite_watch_commit *c, uint32_t n, uint64_t f)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (c[mid].frame < f) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < n && c[lo].frame == f ? (long)lo : -1;
}

uint32_t tm_sqlite_watch_stamp(tm_sqlite_watch *w, uint32_t salt1, uint32_t salt2,
                               tm_sqlite_watch_commit *c, uint32_t n, int64_t now_ms)
{
    for (uint32_t i = 0; i < n; i++) {
        c[i].time_ms = now_ms;
    }
    if (w == NULL || n == 0) {
        return 0;
    }
    /* Copy out this WAL's observations (the lock held only for that). */
    tm_sqlite_seen *mine = malloc(TM_SQLITE_WATCH_CAP * sizeof(*mine));
    if (mine == NULL) {
        return 0; /* the tick's time: late, never early */
    }
    size_t k = 0;
    pthread_mutex_lock(&w->mu);
    uint64_t from = w->count > TM_SQLITE_WATCH_CAP ? w->count - TM_SQLITE_WATCH_CAP : 0;
    for (uint64_t i = from; i < w->count; i++) {
        const tm_sqlite_seen *s = &w->ring[i % TM_SQLITE_WATCH_CAP];
        if (s->salt1 == salt1 && s->salt2 == salt2 && s->frame >= c[0].frame &&
            s->frame <= c[n - 1].frame) {
            mine[k++] = *s;
        }
    }
    pthread_mutex_unlock(&w->mu);
    uint32_t matched = 0;
    for (size_t i = 0; i < k; i++) {
        long j = find_frame(c, n, mine[i].frame);
        if (j < 0 || c[j].cksum1 != mine[i].cksum1 || c[j].cksum2 != mine[i].cksum2) {
            continue; /* not this commit: another WAL reused the frame number */
        }
        if (mine[i].time_ms < c[j].time_ms) {
            matched += c[j].time_ms == now_ms;
            c[j].time_ms = mine[i].time_ms;
        }
    }
    free(mine);
    /* A commit was made no later than any later commit of the same chain
     * of checksums. */
    for (uint32_t i = n - 1; i > 0; i--) {
        if (c[i].time_ms < c[i - 1].time_ms) {
            c[i - 1].time_ms = c[i].time_ms;
        }
    }
    return matched;
}

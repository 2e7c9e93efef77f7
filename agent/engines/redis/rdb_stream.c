/*
 * rdb_stream.c - an RDB over the replication protocol (see rdb_stream.h).
 *
 * hiredis carries the handshake (AUTH, REPLCONF); after SYNC the reply is not
 * RESP but a raw transfer, so it is read from the socket directly, with
 * poll() bounding the silence between bytes.
 */
#include "agent/engines/redis/rdb_stream.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"

#define EOF_MARK_LEN 40

typedef struct fetch {
    redisContext *c;
    const tm_redis_conn_opts *o;
    int idle_ms;
    int batched; /* SO_RCVLOWAT is set (sock_read) */
    tm_redis_fetch_result *res;
} fetch;

/* Read up to cap bytes, waiting at most the idle timeout for the first. 0 with
 * *got = 0 means the server closed the connection. Once the transfer runs
 * the socket has a low-water mark (SO_RCVLOWAT, f->batched): poll() wakes
 * when TM_RDB_STREAM_BATCH bytes are there, so the server's small writes
 * arrive as a few large chunks; what is left below the mark (the end of the
 * snapshot, a slow server) is taken after BATCH_WAIT_MS without more. */
#define BATCH_WAIT_MS 5
static int sock_read(fetch *f, void *buf, size_t cap, size_t *got, tm_err *err)
{
    int waited = 0;
    for (;;) {
        struct pollfd p = {.fd = f->c->fd, .events = POLLIN};
        int slice = f->batched && f->idle_ms > BATCH_WAIT_MS ? BATCH_WAIT_MS : f->idle_ms;
        int n = poll(&p, 1, slice);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return tm_err_set(err, TM_EIO, "poll: %s", strerror(errno));
        }
        waited += slice;
        if (n == 0 && (!f->batched || waited >= f->idle_ms)) {
            return tm_err_set(err, TM_ETIMEDOUT, "no data from the server for %d ms", f->idle_ms);
        }
        /* Below the mark: whatever is there, without waiting for more. */
        ssize_t r = n == 0 ? recv(f->c->fd, buf, cap, MSG_DONTWAIT) : read(f->c->fd, buf, cap);
        if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
            continue;
        }
        if (r < 0) {
            return tm_err_set(err, errno == ECONNRESET ? TM_EUNAVAIL : TM_EIO, "read: %s",
                              strerror(errno));
        }
        *got = (size_t)r;
        return 0;
    }
}

static int sock_write_all(fetch *f, const char *buf, size_t len, tm_err *err)
{
    while (len > 0) {
        ssize_t w = write(f->c->fd, buf, len);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            return tm_err_set(err, TM_EUNAVAIL, "write: %s", strerror(errno));
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* The SYNC reply's first line, after any keepalive newlines. */
static int read_header(fetch *f, char *line, size_t cap, tm_err *err)
{
    size_t n = 0;
    for (;;) {
        char ch;
        size_t got;
        int rc = sock_read(f, &ch, 1, &got, err);
        if (rc != 0) {
            f->res->verdict = TM_REDIS_RETRY;
            return tm_err_prefix(err, "waiting for the snapshot to start");
        }
        if (got == 0) {
            f->res->verdict = TM_REDIS_RETRY;
            return tm_err_set(err, TM_EUNAVAIL,
                              "the server closed the connection before the snapshot started");
        }
        if (ch == '\n') {
            if (n == 0) {
                continue; /* a keepalive while the server prepares the RDB */
            }
            if (n > 0 && line[n - 1] == '\r') {
                n--;
            }
            line[n] = '\0';
            return 0;
        }
        if (n + 1 >= cap) {
            f->res->verdict = TM_REDIS_FINAL;
            return tm_err_set(err, TM_EPROTO, "SYNC reply line longer than %zu bytes", cap);
        }
        line[n++] = ch;
    }
}

static int closed_mid_transfer(fetch *f, tm_err *err)
{
    f->res->verdict = TM_REDIS_RETRY;
    if (f->res->diskless) {
        return tm_err_set(err, TM_EUNAVAIL,
                          "the server closed the replica link after %" PRIu64
                          " bytes of a diskless transfer (client-output-buffer-limit replica, "
                          "a restart, or CLIENT KILL)",
                          f->res->bytes);
    }
    return tm_err_set(err, TM_EUNAVAIL,
                      "the server closed the replica link after %" PRIu64 " of %" PRIu64
                      " bytes (client-output-buffer-limit replica, a restart, or CLIENT KILL)",
                      f->res->bytes, f->res->declared);
}

static int deliver(fetch *f, tm_redis_write_fn write, void *arg, const uint8_t *buf, size_t len,
                   tm_err *err)
{
    if (len == 0) {
        return 0;
    }
    int rc = write(arg, buf, len, err);
    if (rc != 0) {
        f->res->verdict = TM_REDIS_FINAL;
        return tm_err_prefix(err, "at byte %" PRIu64 " of the snapshot", f->res->bytes);
    }
    f->res->bytes += len;
    f->res->chunks++;
    return 0;
}

/* The buffer the next read goes to: TM_RDB_STREAM_BUFS in turn, so a chunk
 * stays untouched while the next TM_RDB_STREAM_BUFS - 1 are delivered. */
static uint8_t *next_buf(uint8_t *bufs, size_t *i)
{
    *i = (*i + 1) % TM_RDB_STREAM_BUFS;
    return bufs + *i * (TM_RDB_STREAM_CHUNK + EOF_MARK_LEN);
}

static int transfer_len(fetch *f, uint8_t *bufs, tm_redis_write_fn write, void *arg, tm_err *err)
{
    size_t bi = 0;
    while (f->res->bytes < f->res->declared) {
        uint8_t *buf = next_buf(bufs, &bi);
        uint64_t want = f->res->declared - f->res->bytes;
        size_t got;
        int rc = sock_read(f, buf, want < TM_RDB_STREAM_CHUNK ? (size_t)want : TM_RDB_STREAM_CHUNK,
                           &got, err);
        if (rc != 0) {
            f->res->verdict = TM_REDIS_RETRY;
            return tm_err_prefix(err, "after %" PRIu64 " of %" PRIu64 " bytes", f->res->bytes,
                                 f->res->declared);
        }
        if (got == 0) {
            return closed_mid_transfer(f, err);
        }
        rc = deliver(f, write, arg, buf, got, err);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* The diskless form: the RDB ends where the 40-byte marker appears. The last
 * 40 bytes seen are held back until more arrive, so the marker is never
 * delivered; after a delivery they move to the start of the next buffer.
 * Each buffer holds TM_RDB_STREAM_CHUNK + EOF_MARK_LEN bytes. */
static int transfer_eof(fetch *f, uint8_t *bufs, const char *mark, tm_redis_write_fn write,
                        void *arg, tm_err *err)
{
    size_t held = 0, bi = 0;
    uint8_t *buf = bufs;
    for (;;) {
        size_t got;
        int rc = sock_read(f, buf + held, TM_RDB_STREAM_CHUNK, &got, err);
        if (rc != 0) {
            f->res->verdict = TM_REDIS_RETRY;
            return tm_err_prefix(err, "after %" PRIu64 " bytes of a diskless transfer",
                                 f->res->bytes);
        }
        if (got == 0) {
            return closed_mid_transfer(f, err);
        }
        size_t total = held + got;
        if (total > EOF_MARK_LEN) {
            size_t out = total - EOF_MARK_LEN;
            rc = deliver(f, write, arg, buf, out, err);
            if (rc != 0) {
                return rc;
            }
            uint8_t *next = next_buf(bufs, &bi);
            memcpy(next, buf + out, EOF_MARK_LEN);
            buf = next;
            held = EOF_MARK_LEN;
        } else {
            held = total;
        }
        if (held == EOF_MARK_LEN && memcmp(buf, mark, EOF_MARK_LEN) == 0) {
            return 0;
        }
    }
}

int tm_redis_rdb_fetch(const tm_redis_conn_opts *o, tm_redis_write_fn write, void *arg,
                       tm_redis_fetch_result *res, tm_err *err)
{
    return tm_redis_rdb_fetch_queued(o, write, NULL, arg, res, err);
}

int tm_redis_rdb_fetch_queued(const tm_redis_conn_opts *o, tm_redis_write_fn write,
                              void (*drain)(void *arg), void *arg, tm_redis_fetch_result *res,
                              tm_err *err)
{
    memset(res, 0, sizeof(*res));
    res->verdict = TM_REDIS_FINAL;
    fetch f = {.o = o, .res = res, .idle_ms = o->idle_timeout_ms > 0 ? o->idle_timeout_ms : 60000};
    redisReply *r = NULL;
    uint8_t *buf = NULL;
    int rc = tm_redis_connect(o, &f.c, &res->verdict, err);
    if (rc != 0) {
        return rc;
    }
    rc = tm_redis_command(f.c, &r, &res->verdict, err, "REPLCONF capa eof");
    freeReplyObject(r);
    if (rc != 0) {
        goto out;
    }
    r = NULL;
    rc = tm_redis_command(f.c, &r, &res->verdict, err, "REPLCONF rdb-only 1");
    freeReplyObject(r);
    if (rc != 0) {
        /* Before 7.0 rdb-only is unknown: we would get the replication stream
         * after the RDB, which we never read (we stop at the RDB's end). */
        if (res->verdict != TM_REDIS_FINAL || rc != TM_EPROTO) {
            goto out;
        }
        tm_err_clear(err);
        rc = 0;
    }
    uint64_t t0 = tm_mono_ns();
    rc = sock_write_all(&f, "SYNC\r\n", 6, err);
    if (rc != 0) {
        res->verdict = TM_REDIS_RETRY;
        tm_err_prefix(err, "sending SYNC");
        goto out;
    }
    char line[128];
    rc = read_header(&f, line, sizeof(line), err);
    if (rc != 0) {
        goto out;
    }
    res->wait_ms = (tm_mono_ns() - t0) / 1000000;
    if (line[0] == '-') {
        int code;
        res->verdict = tm_redis_classify_error(line, &code);
        rc = tm_err_set(err, code, "SYNC: %s (%s)", line + 1, tm_redis_verdict_name(res->verdict));
        goto out;
    }
    if (line[0] != '$') {
        res->verdict = TM_REDIS_FINAL;
        rc = tm_err_set(err, TM_EPROTO, "SYNC: unexpected reply '%.40s'", line);
        goto out;
    }
    /* Best effort: without it every read takes what has arrived. */
    int lowat = (int)TM_RDB_STREAM_BATCH;
    f.batched = setsockopt(f.c->fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat)) == 0;
    buf = malloc(TM_RDB_STREAM_BUFS * (TM_RDB_STREAM_CHUNK + EOF_MARK_LEN));
    if (buf == NULL) {
        rc = tm_err_set(err, TM_ENOMEM, "out of memory");
        goto out;
    }
    if (strncmp(line + 1, "EOF:", 4) == 0) {
        if (strlen(line + 5) != EOF_MARK_LEN) {
            res->verdict = TM_REDIS_FINAL;
            rc = tm_err_set(err, TM_EPROTO, "SYNC: EOF marker of %zu bytes (40 expected)",
                            strlen(line + 5));
            goto out;
        }
        res->diskless = 1;
        rc = transfer_eof(&f, buf, line + 5, write, arg, err);
    } else {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(line + 1, &end, 10);
        if (errno != 0 || end == line + 1 || *end != '\0') {
            res->verdict = TM_REDIS_FINAL;
            rc = tm_err_set(err, TM_EPROTO, "SYNC: bad bulk length '%.40s'", line);
            goto out;
        }
        res->declared = n;
        rc = transfer_len(&f, buf, write, arg, err);
    }
    if (rc == 0) {
        res->verdict = TM_REDIS_OK;
    }
out:
    if (rc != 0) {
        tm_err_prefix(err, "redis %s:%d: RDB over SYNC", o->host, o->port);
    }
    if (drain != NULL && buf != NULL) {
        drain(arg); /* the consumer lets go of the buffers before they are freed */
    }
    free(buf);
    redisFree(f.c);
    return rc;
}

/*
 * pipeline.c - streaming writer (with fan-out) and reader of repository
 * objects. The byte format is frame.c's; this file adds compression, the two
 * digests, threads and sinks.
 *
 * Writer threads: the caller's thread hashes the plaintext and compresses
 * straight into a frame buffer ("chunk"); a seal thread encrypts it in place,
 * hashes the stored bytes and hands the chunk, by reference, to every live
 * sink's bounded queue. Compression dominates, so running GCM and SHA-256 on
 * a second core keeps the whole pipeline at about the speed of zstd alone;
 * one seal thread keeps frames in order. One thread per sink
 * drains its queue into the sink. Chunks are reference counted and recycled
 * through a free list, so steady state allocates nothing and the number of
 * chunks alive is bounded by queue_frames + 2 whatever the object size.
 * One mutex guards queues, the free list and the sink states: it is taken a
 * few times per MiB, so contention is irrelevant next to compression.
 */
#include "common/pipeline.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
/* For ZSTD_estimateCStreamSize(); Debian's libzstd.so exports it. */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "common/frame.h"
#include "common/util.h"

#define DEFAULT_QUEUE_FRAMES 4
#define SEAL_QUEUE 2
#define READ_CHUNK (256 * 1024)

typedef struct chunk {
    struct chunk *next_free;
    int refs; /* under w->mu */
    size_t len;
    uint8_t data[];
} chunk;

typedef struct sink_slot {
    struct tm_pipeline_writer *w;
    tm_sink sink;
    pthread_t thread;
    int started;
    int had_thread; /* the thread owns commit/abort of the sink */
    chunk **q;      /* ring of queue_frames */
    size_t head, count;
    int failed; /* write failed: aborted, skipped from now on */
    tm_sink_result result;
} sink_slot;

struct tm_pipeline_writer {
    char *object_key;
    tm_frame_sealer *sealer;
    ZSTD_CCtx *cctx;
    XXH3_state_t *xxh;
    tm_sha256 *sha;
    uint32_t frame_size;
    size_t qcap;
    chunk *cur; /* being filled by zstd; payload at data + TM_FRAME_LEN_LEN */
    size_t fill;
    uint64_t plain_size, stored_size;
    int finished;

    pthread_mutex_t mu;
    pthread_cond_t cv_prod; /* a queue has room */
    pthread_cond_t cv_sink; /* a queue has work, or closed */
    int closed;             /* no more chunks */
    int aborting;           /* closed without finish: abort, not commit */
    chunk *free_list;
    size_t nsinks;
    sink_slot *slots;

    /* Seal stage (under mu): compressed chunks waiting for GCM + SHA-256. */
    pthread_t seal_thread;
    int seal_started;
    pthread_cond_t cv_seal;      /* work queued, or closed */
    pthread_cond_t cv_seal_room; /* room in the queue, or the stage failed */
    chunk *sq[SEAL_QUEUE];
    size_t sq_fill[SEAL_QUEUE];
    int sq_last[SEAL_QUEUE];
    size_t sq_head, sq_count;
    int seal_closed;
    int seal_rc; /* first failure of the stage; later chunks are dropped */
    tm_err seal_err;
};

/* ---- chunks ----------------------------------------------------------- */

static chunk *chunk_get(tm_pipeline_writer *w)
{
    pthread_mutex_lock(&w->mu);
    chunk *c = w->free_list;
    if (c != NULL) {
        w->free_list = c->next_free;
    }
    pthread_mutex_unlock(&w->mu);
    if (c == NULL) {
        c = malloc(sizeof(*c) + w->frame_size + TM_FRAME_OVERHEAD);
    }
    if (c != NULL) {
        c->refs = 0;
        c->len = 0;
        c->next_free = NULL;
    }
    return c;
}

/* Called with w->mu held. */
static void chunk_release_locked(tm_pipeline_writer *w, chunk *c)
{
    if (--c->refs <= 0) {
        c->next_free = w->free_list;
        w->free_list = c;
    }
}

/* ---- sink threads ----------------------------------------------------- */

static void slot_fail(sink_slot *s, const tm_err *e, int code)
{
    s->failed = 1;
    s->result.code = code;
    snprintf(s->result.msg, sizeof(s->result.msg), "%s", e->msg);
}

static void *sink_main(void *arg)
{
    sink_slot *s = arg;
    tm_pipeline_writer *w = s->w;
    pthread_setname_np(pthread_self(), "tm-sink"); /* for top -H and profilers */
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (s->count == 0 && !w->closed) {
            pthread_cond_wait(&w->cv_sink, &w->mu);
        }
        if (s->count == 0) {
            break; /* closed and drained */
        }
        chunk *c = s->q[s->head];
        s->head = (s->head + 1) % w->qcap;
        s->count--;
        int failed = s->failed;
        pthread_mutex_unlock(&w->mu);
        if (!failed) {
            tm_err e = {0};
            int rc = s->sink.write(s->sink.arg, c->data, c->len, &e);
            if (rc != TM_OK) {
                /* Abort outside the lock: it may do slow I/O (S3 abort). */
                s->sink.abort(s->sink.arg);
                pthread_mutex_lock(&w->mu);
                slot_fail(s, &e, rc);
                pthread_mutex_unlock(&w->mu);
            }
        }
        pthread_mutex_lock(&w->mu);
        chunk_release_locked(w, c);
        pthread_cond_broadcast(&w->cv_prod);
    }
    int failed = s->failed, aborting = w->aborting;
    pthread_mutex_unlock(&w->mu);
    if (failed) {
        return NULL;
    }
    if (aborting) {
        s->sink.abort(s->sink.arg);
        s->result.code = TM_EINTERNAL;
        snprintf(s->result.msg, sizeof(s->result.msg), "aborted: the object was not finished");
        return NULL;
    }
    tm_err e = {0};
    int rc = s->sink.commit(s->sink.arg, &e);
    pthread_mutex_lock(&w->mu);
    if (rc != TM_OK) {
        slot_fail(s, &e, rc); /* commit released the sink: no abort */
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Hand a sealed chunk to every live sink; waits while a live queue is full.
 * Returns the number of live sinks. */
static size_t dispatch(tm_pipeline_writer *w, chunk *c)
{
    size_t live = 0;
    pthread_mutex_lock(&w->mu);
    c->refs = 1; /* ours until every queue has it */
    for (size_t i = 0; i < w->nsinks; i++) {
        sink_slot *s = &w->slots[i];
        while (!s->failed && s->count == w->qcap) {
            pthread_cond_wait(&w->cv_prod, &w->mu);
        }
        if (s->failed) {
            continue;
        }
        c->refs++;
        s->q[(s->head + s->count) % w->qcap] = c;
        s->count++;
        live++;
    }
    chunk_release_locked(w, c);
    pthread_cond_broadcast(&w->cv_sink);
    pthread_mutex_unlock(&w->mu);
    return live;
}

/* The sinks' common code survives (a full disk stays TM_ENOSPC, a wrong key
 * TM_EAUTH): callers classify failures by it. */
static int all_failed_err(tm_pipeline_writer *w, tm_err *err)
{
    pthread_mutex_lock(&w->mu);
    const char *why = w->nsinks > 0 ? w->slots[0].result.msg : "";
    const char *name = w->nsinks > 0 && w->slots[0].sink.name ? w->slots[0].sink.name : "sink";
    int code = TM_OK;
    for (size_t i = 0; i < w->nsinks; i++) {
        int c = w->slots[i].result.code;
        code = code == TM_OK || code == c ? c : TM_EIO;
    }
    pthread_mutex_unlock(&w->mu);
    return tm_err_set(err, code != TM_OK ? code : TM_EIO,
                      "object %s: every sink failed (first: %s: %s)", w->object_key, name, why);
}

/* ---- writer ----------------------------------------------------------- */

size_t tm_pipeline_writer_mem_estimate(const tm_pipeline_opts *opts, size_t nsinks)
{
    int level = opts != NULL && opts->zstd_level > 0 ? opts->zstd_level : 3;
    size_t fs = opts != NULL && opts->frame_size > 0 ? opts->frame_size : TM_FRAME_SIZE_DEFAULT;
    size_t q = opts != NULL && opts->queue_frames > 0 ? opts->queue_frames : DEFAULT_QUEUE_FRAMES;
    /* Distinct chunks alive: the one being filled, the one each sink is
     * writing and up to q queued; sinks share chunks, so the slowest sink's
     * window bounds them all. */
    return (q + 3 + SEAL_QUEUE) * (fs + TM_FRAME_OVERHEAD + sizeof(chunk)) +
           ZSTD_estimateCStreamSize(level) + nsinks * (sizeof(sink_slot) + q * sizeof(chunk *));
}

/* Seal thread: encrypt, hash the stored bytes, fan out. */
static int seal_one(tm_pipeline_writer *w, chunk *c, size_t fill, int last, tm_err *err)
{
    int rc = tm_frame_seal(w->sealer, c->data, fill, last, err);
    if (rc != TM_OK) {
        pthread_mutex_lock(&w->mu);
        c->refs = 1;
        chunk_release_locked(w, c);
        pthread_mutex_unlock(&w->mu);
        return tm_err_prefix(err, "object %s", w->object_key);
    }
    c->len = fill + TM_FRAME_OVERHEAD;
    tm_sha256_update(w->sha, c->data, c->len);
    w->stored_size += c->len;
    if (dispatch(w, c) == 0) {
        return all_failed_err(w, err);
    }
    return TM_OK;
}

static void *seal_main(void *arg)
{
    tm_pipeline_writer *w = arg;
    pthread_setname_np(pthread_self(), "tm-seal");
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->sq_count == 0 && !w->seal_closed) {
            pthread_cond_wait(&w->cv_seal, &w->mu);
        }
        if (w->sq_count == 0) {
            break; /* closed and drained */
        }
        chunk *c = w->sq[w->sq_head];
        size_t fill = w->sq_fill[w->sq_head];
        int last = w->sq_last[w->sq_head];
        w->sq_head = (w->sq_head + 1) % SEAL_QUEUE;
        w->sq_count--;
        pthread_cond_broadcast(&w->cv_seal_room);
        if (w->seal_rc != TM_OK) {
            c->refs = 1;
            chunk_release_locked(w, c); /* the object is lost anyway */
            continue;
        }
        pthread_mutex_unlock(&w->mu);
        tm_err e = {0};
        int rc = seal_one(w, c, fill, last, &e);
        pthread_mutex_lock(&w->mu);
        if (rc != TM_OK && w->seal_rc == TM_OK) {
            w->seal_rc = rc;
            w->seal_err = e;
            pthread_cond_broadcast(&w->cv_seal_room);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Stop the seal stage after it drained (or, aborting, dropped) its queue. */
static void seal_stop(tm_pipeline_writer *w, int aborting)
{
    if (!w->seal_started) {
        return;
    }
    pthread_mutex_lock(&w->mu);
    if (aborting && w->seal_rc == TM_OK) {
        w->seal_rc = tm_err_set(&w->seal_err, TM_EINTERNAL, "object %s: aborted", w->object_key);
    }
    w->seal_closed = 1;
    pthread_cond_broadcast(&w->cv_seal);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->seal_thread, NULL);
    w->seal_started = 0;
}

/* Caller's thread: queue the filled chunk for sealing, take a fresh one. */
static int seal_and_dispatch(tm_pipeline_writer *w, int last, tm_err *err)
{
    pthread_mutex_lock(&w->mu);
    while (w->sq_count == SEAL_QUEUE && w->seal_rc == TM_OK) {
        pthread_cond_wait(&w->cv_seal_room, &w->mu);
    }
    if (w->seal_rc != TM_OK) {
        int rc = w->seal_rc;
        if (err != NULL) {
            *err = w->seal_err;
        }
        pthread_mutex_unlock(&w->mu);
        return rc;
    }
    size_t i = (w->sq_head + w->sq_count) % SEAL_QUEUE;
    w->sq[i] = w->cur;
    w->sq_fill[i] = w->fill;
    w->sq_last[i] = last;
    w->sq_count++;
    pthread_cond_signal(&w->cv_seal);
    pthread_mutex_unlock(&w->mu);
    w->cur = NULL;
    w->fill = 0;
    if (!last) {
        w->cur = chunk_get(w);
        if (w->cur == NULL) {
            return tm_err_set(err, TM_ENOMEM, "object %s: out of memory", w->object_key);
        }
    }
    return TM_OK;
}

static void writer_stop(tm_pipeline_writer *w, int aborting)
{
    pthread_mutex_lock(&w->mu);
    w->closed = 1;
    w->aborting = aborting;
    pthread_cond_broadcast(&w->cv_sink);
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; i < w->nsinks; i++) {
        if (w->slots[i].started) {
            pthread_join(w->slots[i].thread, NULL);
            w->slots[i].started = 0;
        }
    }
}

int tm_pipeline_writer_new(tm_pipeline_writer **out, const uint8_t key[TM_KEY_LEN],
                           const char *object_key, const tm_sink *sinks, size_t nsinks,
                           const tm_pipeline_opts *opts, tm_err *err)
{
    int level = opts != NULL && opts->zstd_level != 0 ? opts->zstd_level : 3;
    if (nsinks == 0 || object_key == NULL || level < 1 || level > 19) {
        for (size_t i = 0; i < nsinks; i++) {
            sinks[i].abort(sinks[i].arg);
        }
        return tm_err_set(err, TM_EINVAL,
                          "pipeline: need at least one sink, an object key and zstd level 1..19");
    }
    tm_pipeline_writer *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        for (size_t i = 0; i < nsinks; i++) {
            sinks[i].abort(sinks[i].arg);
        }
        return tm_err_set(err, TM_ENOMEM, "pipeline: out of memory");
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv_prod, NULL);
    pthread_cond_init(&w->cv_sink, NULL);
    pthread_cond_init(&w->cv_seal, NULL);
    pthread_cond_init(&w->cv_seal_room, NULL);
    w->qcap = opts != NULL && opts->queue_frames > 0 ? opts->queue_frames : DEFAULT_QUEUE_FRAMES;
    w->nsinks = nsinks;
    w->slots = calloc(nsinks, sizeof(*w->slots));
    int rc = TM_OK;
    if (w->slots == NULL) {
        w->nsinks = 0;
        for (size_t i = 0; i < nsinks; i++) {
            sinks[i].abort(sinks[i].arg);
        }
        rc = tm_err_set(err, TM_ENOMEM, "pipeline: out of memory");
        goto fail;
    }
    /* From here every sink is in a slot; failures below abort them via free. */
    for (size_t i = 0; i < nsinks; i++) {
        w->slots[i].w = w;
        w->slots[i].sink = sinks[i];
        w->slots[i].q = calloc(w->qcap, sizeof(chunk *));
        if (w->slots[i].q == NULL) {
            rc = tm_err_set(err, TM_ENOMEM, "pipeline: out of memory");
        }
    }
    if (rc != TM_OK) {
        goto fail;
    }
    w->object_key = strdup(object_key);
    w->cctx = ZSTD_createCCtx();
    w->xxh = XXH3_createState();
    if (w->object_key == NULL || w->cctx == NULL || w->xxh == NULL) {
        rc = tm_err_set(err, TM_ENOMEM, "pipeline: out of memory");
        goto fail;
    }
    XXH3_128bits_reset(w->xxh);
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level);
    /* The content checksum is redundant with XXH3 + GCM: skip it. */
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 0);
    if ((rc = tm_sha256_new(&w->sha, err)) != TM_OK ||
        (rc = tm_frame_sealer_new(&w->sealer, key, object_key, TM_FRAME_F_ZSTD,
                                  opts != NULL ? opts->frame_size : 0, err)) != TM_OK) {
        goto fail;
    }
    w->frame_size = tm_frame_sealer_frame_size(w->sealer);
    for (size_t i = 0; i < nsinks; i++) {
        if (pthread_create(&w->slots[i].thread, NULL, sink_main, &w->slots[i]) != 0) {
            rc = tm_err_set(err, TM_EINTERNAL, "pipeline: cannot start a sink thread");
            goto fail;
        }
        w->slots[i].started = 1;
        w->slots[i].had_thread = 1;
    }
    /* The header is the first chunk every sink gets. */
    w->cur = chunk_get(w);
    if (w->cur == NULL) {
        rc = tm_err_set(err, TM_ENOMEM, "pipeline: out of memory");
        goto fail;
    }
    memcpy(w->cur->data, tm_frame_sealer_header(w->sealer), TM_FRAME_HEADER_LEN);
    w->cur->len = TM_FRAME_HEADER_LEN;
    tm_sha256_update(w->sha, w->cur->data, TM_FRAME_HEADER_LEN);
    w->stored_size = TM_FRAME_HEADER_LEN;
    chunk *h = w->cur;
    w->cur = NULL;
    dispatch(w, h);
    if (pthread_create(&w->seal_thread, NULL, seal_main, w) != 0) {
        rc = tm_err_set(err, TM_EINTERNAL, "pipeline: cannot start the seal thread");
        goto fail;
    }
    w->seal_started = 1;
    w->cur = chunk_get(w);
    if (w->cur == NULL) {
        rc = tm_err_set(err, TM_ENOMEM, "pipeline: out of memory");
        goto fail;
    }
    *out = w;
    return TM_OK;
fail:
    tm_pipeline_writer_free(w);
    return rc;
}

int tm_pipeline_writer_write(tm_pipeline_writer *w, const void *buf, size_t len, tm_err *err)
{
    if (w->finished || w->cur == NULL) {
        return tm_err_set(err, TM_EINVAL, "object %s: write after finish or failure",
                          w->object_key);
    }
    XXH3_128bits_update(w->xxh, buf, len);
    w->plain_size += len;
    ZSTD_inBuffer in = {buf, len, 0};
    while (in.pos < in.size) {
        if (w->fill == w->frame_size) {
            int rc = seal_and_dispatch(w, 0, err);
            if (rc != TM_OK) {
                return rc;
            }
        }
        ZSTD_outBuffer o = {w->cur->data + TM_FRAME_LEN_LEN, w->frame_size, w->fill};
        size_t zr = ZSTD_compressStream2(w->cctx, &o, &in, ZSTD_e_continue);
        if (ZSTD_isError(zr)) {
            return tm_err_set(err, TM_EINTERNAL, "object %s: zstd: %s", w->object_key,
                              ZSTD_getErrorName(zr));
        }
        w->fill = o.pos;
    }
    return TM_OK;
}

static void xxh3_hex(XXH3_state_t *st, char out[33])
{
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
    tm_hex(c.digest, sizeof(c.digest), out);
}

int tm_pipeline_writer_finish(tm_pipeline_writer *w, tm_object_digest *digest, tm_err *err)
{
    int rc = TM_OK;
    if (w->finished || w->cur == NULL) {
        return tm_err_set(err, TM_EINVAL, "object %s: finish twice or after failure",
                          w->object_key);
    }
    w->finished = 1;
    for (;;) {
        if (w->fill == w->frame_size) {
            if ((rc = seal_and_dispatch(w, 0, err)) != TM_OK) {
                break;
            }
        }
        ZSTD_inBuffer in = {NULL, 0, 0};
        ZSTD_outBuffer o = {w->cur->data + TM_FRAME_LEN_LEN, w->frame_size, w->fill};
        size_t left = ZSTD_compressStream2(w->cctx, &o, &in, ZSTD_e_end);
        if (ZSTD_isError(left)) {
            rc = tm_err_set(err, TM_EINTERNAL, "object %s: zstd: %s", w->object_key,
                            ZSTD_getErrorName(left));
            break;
        }
        w->fill = o.pos;
        if (left == 0) {
            rc = seal_and_dispatch(w, 1, err);
            break;
        }
    }
    /* Digests and sizes are final once the seal stage has drained. */
    seal_stop(w, rc != TM_OK);
    if (rc == TM_OK && w->seal_rc != TM_OK) {
        rc = w->seal_rc;
        if (err != NULL) {
            *err = w->seal_err;
        }
    }
    writer_stop(w, rc != TM_OK);
    if (digest != NULL) {
        memset(digest, 0, sizeof(*digest));
        digest->plain_size = w->plain_size;
        digest->stored_size = w->stored_size;
        digest->frames = tm_frame_sealer_frames(w->sealer);
        xxh3_hex(w->xxh, digest->xxh3_128);
        tm_sha256_final_hex(w->sha, digest->sha256);
    }
    if (rc != TM_OK) {
        return rc;
    }
    /* Per-sink verdicts, gathered into one message. */
    size_t nfail = 0;
    int code = TM_OK;
    char msg[TM_ERR_MSG_MAX] = "";
    size_t off = 0;
    for (size_t i = 0; i < w->nsinks; i++) {
        sink_slot *s = &w->slots[i];
        if (s->result.code == TM_OK) {
            continue;
        }
        nfail++;
        code = code == TM_OK ? s->result.code : TM_EIO;
        if (off < sizeof(msg)) {
            int n = snprintf(msg + off, sizeof(msg) - off, "%s%s: %s", off ? "; " : "",
                             s->sink.name ? s->sink.name : "sink", s->result.msg);
            off += n > 0 ? (size_t)n : 0;
        }
    }
    if (nfail > 0) {
        return tm_err_set(err, nfail > 1 ? TM_EIO : code, "object %s: %zu of %zu sinks failed: %s",
                          w->object_key, nfail, w->nsinks, msg);
    }
    return TM_OK;
}

const tm_sink_result *tm_pipeline_writer_result(const tm_pipeline_writer *w, size_t i)
{
    return i < w->nsinks ? &w->slots[i].result : NULL;
}

void tm_pipeline_writer_free(tm_pipeline_writer *w)
{
    if (w == NULL) {
        return;
    }
    seal_stop(w, 1); /* no-op after finish */
    int any_started = 0;
    for (size_t i = 0; i < w->nsinks; i++) {
        any_started |= w->slots[i].started;
    }
    if (any_started) {
        writer_stop(w, 1); /* not finished: threads abort their sinks */
    }
    /* Sinks whose thread never started still need their abort. */
    for (size_t i = 0; i < w->nsinks; i++) {
        sink_slot *s = &w->slots[i];
        if (!s->had_thread) {
            s->sink.abort(s->sink.arg);
        }
        for (size_t k = 0; k < s->count; k++) {
            chunk_release_locked(w, s->q[(s->head + k) % w->qcap]);
        }
        free(s->q);
    }
    if (w->cur != NULL) {
        w->cur->refs = 0;
        chunk_release_locked(w, w->cur);
    }
    while (w->free_list != NULL) {
        chunk *c = w->free_list;
        w->free_list = c->next_free;
        free(c);
    }
    free(w->slots);
    tm_frame_sealer_free(w->sealer);
    tm_sha256_free(w->sha);
    ZSTD_freeCCtx(w->cctx);
    XXH3_freeState(w->xxh);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv_prod);
    pthread_cond_destroy(&w->cv_sink);
    pthread_cond_destroy(&w->cv_seal);
    pthread_cond_destroy(&w->cv_seal_room);
    free(w->object_key);
    free(w);
}

int tm_pipeline_put_fd(const uint8_t key[TM_KEY_LEN], const char *object_key, int fd,
                       const tm_sink *sinks, size_t nsinks, const tm_pipeline_opts *opts,
                       tm_object_digest *digest, tm_sink_result *results, tm_err *err)
{
    tm_pipeline_writer *w = NULL;
    int rc = tm_pipeline_writer_new(&w, key, object_key, sinks, nsinks, opts, err);
    if (rc != TM_OK) {
        return rc;
    }
    uint8_t *buf = malloc(READ_CHUNK);
    if (buf == NULL) {
        tm_pipeline_writer_free(w);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    for (;;) {
        size_t got = 0;
        rc = tm_source_fd(&fd, buf, READ_CHUNK, &got, err);
        if (rc != TM_OK || got == 0) {
            break;
        }
        if ((rc = tm_pipeline_writer_write(w, buf, got, err)) != TM_OK) {
            break;
        }
    }
    free(buf);
    if (rc == TM_OK) {
        rc = tm_pipeline_writer_finish(w, digest, err);
        for (size_t i = 0; results != NULL && i < nsinks; i++) {
            results[i] = *tm_pipeline_writer_result(w, i);
        }
    }
    tm_pipeline_writer_free(w);
    return rc;
}

/* ---- sources and the file sink --------------------------------------- */

int tm_source_fd(void *arg, void *buf, size_t cap, size_t *got, tm_err *err)
{
    int fd = *(int *)arg;
    for (;;) {
        ssize_t n = read(fd, buf, cap);
        if (n >= 0) {
            *got = (size_t)n;
            return TM_OK;
        }
        if (errno != EINTR) {
            return tm_err_set(err, tm_err_from_errno(errno), "read: %s", strerror(errno));
        }
    }
}

typedef struct file_sink {
    int fd;
    char *path;
    char *tmp;
    uint64_t written;
    tm_writeback wb; /* written back as it goes, not at the fsync */
} file_sink;

static void file_sink_release(file_sink *f)
{
    free(f->path);
    free(f->tmp);
    free(f);
}

static int file_sink_write(void *arg, const void *buf, size_t len, tm_err *err)
{
    file_sink *f = arg;
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(f->fd, p, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return tm_err_set(err, tm_err_from_errno(errno), "write %s: %s", f->tmp,
                              strerror(errno));
        }
        if (n == 0) {
            /* No progress and no errno: never loop on it, never call it done. */
            return tm_err_set(err, TM_EIO, "write %s: wrote 0 of %zu bytes", f->tmp, len);
        }
        p += n;
        len -= (size_t)n;
        f->written += (uint64_t)n;
    }
    f->wb.fd = f->fd;
    tm_writeback_progress(&f->wb, f->written, 0);
    return TM_OK;
}

static void file_sink_abort(void *arg)
{
    file_sink *f = arg;
    close(f->fd);
    unlink(f->tmp);
    file_sink_release(f);
}

static int file_sink_commit(void *arg, tm_err *err)
{
    file_sink *f = arg;
    int rc = TM_OK;
    /* Durable before visible: data, then the name, then the directory entry. */
    if (fsync(f->fd) != 0) {
        rc = tm_err_set(err, tm_err_from_errno(errno), "fsync %s: %s", f->tmp, strerror(errno));
    }
    if (close(f->fd) != 0 && rc == TM_OK) {
        rc = tm_err_set(err, tm_err_from_errno(errno), "close %s: %s", f->tmp, strerror(errno));
    }
    if (rc == TM_OK && rename(f->tmp, f->path) != 0) {
        rc = tm_err_set(err, tm_err_from_errno(errno), "rename %s: %s", f->path, strerror(errno));
    }
    if (rc == TM_OK) {
        /* The rename is durable only once the directory is: a failed
         * directory fsync is a failed commit, and the file is taken back. */
        char *d = strdup(f->path);
        int dfd = d != NULL ? open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        if (dfd < 0 || (fsync(dfd) != 0 && errno != EINVAL)) {
            int e = d == NULL ? ENOMEM : errno;
            rc = tm_err_set(err, tm_err_from_errno(e), "fsync directory of %s: %s", f->path,
                            strerror(e));
            unlink(f->path);
        }
        if (dfd >= 0) {
            close(dfd);
        }
        free(d);
    } else {
        unlink(f->tmp);
    }
    file_sink_release(f);
    return rc;
}

int tm_sink_file_open(tm_sink *out, const char *path, tm_err *err)
{
    file_sink *f = calloc(1, sizeof(*f));
    if (f == NULL || (f->path = strdup(path)) == NULL ||
        asprintf(&f->tmp, "%s.tmp.%ld", path, (long)getpid()) < 0) {
        if (f != NULL) {
            f->tmp = NULL;
            file_sink_release(f);
        }
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (f->fd < 0) {
        int e = errno;
        tm_err_set(err, tm_err_from_errno(e), "open %s: %s", f->tmp, strerror(e));
        file_sink_release(f);
        return err != NULL ? err->code : tm_err_from_errno(e);
    }
    *out = (tm_sink){file_sink_write, file_sink_commit, file_sink_abort, f, NULL};
    return TM_OK;
}

/* ---- reader ----------------------------------------------------------- */

typedef struct read_ctx {
    const char *object_key;
    ZSTD_DStream *dctx;
    XXH3_state_t *xxh;
    const tm_sink *out;
    uint8_t *obuf;
    size_t ocap;
    uint64_t plain_size;
    int zdone; /* zstd frame complete */
} read_ctx;

static int read_payload(void *arg, const uint8_t *buf, size_t len, tm_err *err)
{
    read_ctx *c = arg;
    ZSTD_inBuffer in = {buf, len, 0};
    while (in.pos < in.size) {
        if (c->zdone) {
            return tm_err_set(err, TM_ECORRUPT, "data after the end of the compressed stream");
        }
        ZSTD_outBuffer o = {c->obuf, c->ocap, 0};
        size_t zr = ZSTD_decompressStream(c->dctx, &o, &in);
        if (ZSTD_isError(zr)) {
            return tm_err_set(err, TM_ECORRUPT, "decompression failed: %s", ZSTD_getErrorName(zr));
        }
        c->zdone = zr == 0;
        if (o.pos > 0) {
            XXH3_128bits_update(c->xxh, c->obuf, o.pos);
            c->plain_size += o.pos;
            if (c->out != NULL) {
                int rc = c->out->write(c->out->arg, c->obuf, o.pos, err);
                if (rc != TM_OK) {
                    return rc;
                }
            }
        }
        /* Output may still be pending in zstd with all input consumed. */
        while (in.pos == in.size && o.pos == o.size && !c->zdone) {
            o.pos = 0;
            zr = ZSTD_decompressStream(c->dctx, &o, &in);
            if (ZSTD_isError(zr)) {
                return tm_err_set(err, TM_ECORRUPT, "decompression failed: %s",
                                  ZSTD_getErrorName(zr));
            }
            c->zdone = zr == 0;
            XXH3_128bits_update(c->xxh, c->obuf, o.pos);
            c->plain_size += o.pos;
            if (c->out != NULL && o.pos > 0) {
                int rc = c->out->write(c->out->arg, c->obuf, o.pos, err);
                if (rc != TM_OK) {
                    return rc;
                }
            }
        }
    }
    return TM_OK;
}

static int digest_check(const char *object_key, const char *what, const char *expect,
                        const char *got, tm_err *err)
{
    if (expect == NULL || expect[0] == '\0' || strcmp(expect, got) == 0) {
        return TM_OK;
    }
    return tm_err_set(err, TM_ECORRUPT, "object %s: end: %s digest mismatch (expected %s, got %s)",
                      object_key, what, expect, got);
}

int tm_pipeline_read(const uint8_t key[TM_KEY_LEN], const char *object_key, tm_source_fn src,
                     void *src_arg, const tm_sink *out, const tm_object_digest *expect,
                     tm_object_digest *got, tm_err *err)
{
    read_ctx c = {.object_key = object_key, .out = out};
    tm_frame_reader *fr = NULL;
    tm_sha256 *sha = NULL;
    uint8_t *ibuf = malloc(READ_CHUNK);
    uint64_t stored = 0;
    int rc = TM_OK;
    c.dctx = ZSTD_createDStream();
    c.xxh = XXH3_createState();
    c.ocap = ZSTD_DStreamOutSize();
    c.obuf = malloc(c.ocap);
    if (ibuf == NULL || c.dctx == NULL || c.xxh == NULL || c.obuf == NULL) {
        rc = tm_err_set(err, TM_ENOMEM, "object %s: out of memory", object_key);
        goto done;
    }
    /* Bound the decoder's window (memory) to what our writer can produce. */
    ZSTD_DCtx_setParameter(c.dctx, ZSTD_d_windowLogMax, 24);
    XXH3_128bits_reset(c.xxh);
    if ((rc = tm_sha256_new(&sha, err)) != TM_OK ||
        (rc = tm_frame_reader_new(&fr, key, object_key, read_payload, &c, err)) != TM_OK) {
        goto done;
    }
    for (;;) {
        size_t n = 0;
        if ((rc = src(src_arg, ibuf, READ_CHUNK, &n, err)) != TM_OK) {
            tm_err_prefix(err, "object %s: reading stored bytes", object_key);
            goto done;
        }
        if (n == 0) {
            break;
        }
        stored += n;
        tm_sha256_update(sha, ibuf, n);
        if ((rc = tm_frame_reader_feed(fr, ibuf, n, err)) != TM_OK) {
            goto done;
        }
    }
    if ((rc = tm_frame_reader_finish(fr, err)) != TM_OK) {
        goto done;
    }
    if (!c.zdone) {
        rc = tm_err_set(err, TM_ECORRUPT, "object %s: frame %llu: compressed stream incomplete",
                        object_key, (unsigned long long)tm_frame_reader_frames(fr) - 1);
        goto done;
    }
    tm_object_digest d = {
        .plain_size = c.plain_size, .stored_size = stored, .frames = tm_frame_reader_frames(fr)};
    xxh3_hex(c.xxh, d.xxh3_128);
    tm_sha256_final_hex(sha, d.sha256);
    if (got != NULL) {
        *got = d;
    }
    if (expect != NULL) {
        if ((rc = digest_check(object_key, "stored SHA-256", expect->sha256, d.sha256, err)) !=
                TM_OK ||
            (rc = digest_check(object_key, "plaintext XXH3-128", expect->xxh3_128, d.xxh3_128,
                               err)) != TM_OK) {
            goto done;
        }
        if ((expect->plain_size != 0 && expect->plain_size != d.plain_size) ||
            (expect->stored_size != 0 && expect->stored_size != d.stored_size)) {
            rc = tm_err_set(err, TM_ECORRUPT,
                            "object %s: end: size mismatch (expected %llu/%llu plain/stored, got "
                            "%llu/%llu)",
                            object_key, (unsigned long long)expect->plain_size,
                            (unsigned long long)expect->stored_size,
                            (unsigned long long)d.plain_size, (unsigned long long)d.stored_size);
            goto done;
        }
    }
done:
    if (out != NULL) {
        if (rc == TM_OK) {
            rc = out->commit(out->arg, err);
        } else {
            out->abort(out->arg);
        }
    }
    tm_frame_reader_free(fr);
    tm_sha256_free(sha);
    ZSTD_freeDStream(c.dctx);
    XXH3_freeState(c.xxh);
    free(c.obuf);
    free(ibuf);
    return rc;
}

int tm_pipeline_verify_stored(const char *object_key, tm_source_fn src, void *src_arg,
                              const char *expect_sha256, uint64_t expect_stored_size,
                              tm_object_digest *got, tm_err *err)
{
    tm_sha256 *sha = NULL;
    uint8_t *buf = malloc(READ_CHUNK);
    uint64_t stored = 0;
    int rc = buf == NULL ? tm_err_set(err, TM_ENOMEM, "out of memory") : tm_sha256_new(&sha, err);
    while (rc == TM_OK) {
        size_t n = 0;
        if ((rc = src(src_arg, buf, READ_CHUNK, &n, err)) != TM_OK) {
            tm_err_prefix(err, "object %s: reading stored bytes", object_key);
            break;
        }
        if (n == 0) {
            break;
        }
        stored += n;
        tm_sha256_update(sha, buf, n);
    }
    if (rc == TM_OK) {
        tm_object_digest d = {.stored_size = stored};
        tm_sha256_final_hex(sha, d.sha256);
        if (got != NULL) {
            *got = d;
        }
        if (expect_stored_size != 0 && expect_stored_size != stored) {
            rc = tm_err_set(err, TM_ECORRUPT,
                            "object %s: stored size mismatch (expected %llu, got %llu)", object_key,
                            (unsigned long long)expect_stored_size, (unsigned long long)stored);
        } else {
            rc = digest_check(object_key, "stored SHA-256", expect_sha256, d.sha256, err);
        }
    }
    tm_sha256_free(sha);
    free(buf);
    return rc;
}

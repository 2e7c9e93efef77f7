/*
 * pipeline.h - the data plane: plaintext in, encrypted repository objects out
 * (and back), in one streaming pass with bounded memory.
 *
 *   write: plaintext -> XXH3-128 -> zstd -> AES-256-GCM frames -> SHA-256 -> N sinks
 *   read:  source -> SHA-256 -> frames (tags, order, last flag) -> zstd -> XXH3-128 -> sink
 *
 * Stored bytes are produced once and fed to every sink (fan-out); each sink
 * runs on its own thread behind a bounded queue, so a slow repository delays
 * the others by at most its queue bound, and a failed one is aborted and
 * reported while the others complete. Memory does not depend on the object
 * size: about (queue_frames + 2) frames + the zstd context.
 */
#ifndef TM_PIPELINE_H
#define TM_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "common/crypto.h"
#include "common/err.h"

/* A destination for bytes. The pipeline calls write() any number of times,
 * then exactly one of commit() (everything written, make it durable/visible)
 * or abort() (leave nothing visible); both release arg. */
typedef struct tm_sink {
    int (*write)(void *arg, const void *buf, size_t len, tm_err *err);
    int (*commit)(void *arg, tm_err *err);
    void (*abort)(void *arg);
    void *arg;
    const char *name; /* for messages ("local", "eu-west"); may be NULL */
} tm_sink;

/* A plain file: written to "<path>.tmp.<pid>", fsync + rename + dir fsync on
 * commit, unlinked on abort. The same atomicity rule as the posix backend. */
int tm_sink_file_open(tm_sink *out, const char *path, tm_err *err);

/* Adapter: a storage writer as a sink (commit = tm_storage_put_commit, abort =
 * tm_storage_put_abort). Defined in pipeline_storage.c. */
struct tm_storage_writer;
void tm_sink_from_storage_writer(tm_sink *out, struct tm_storage_writer *w, const char *name);

/* Where stored bytes come from when reading: fill buf, *got = 0 at the end. */
typedef int (*tm_source_fn)(void *arg, void *buf, size_t cap, size_t *got, tm_err *err);

/* Source adapters: a file descriptor (arg = pointer to int fd) and a storage
 * reader (arg = tm_storage_reader *, in pipeline_storage.c). */
int tm_source_fd(void *arg, void *buf, size_t cap, size_t *got, tm_err *err);
int tm_source_storage_reader(void *arg, void *buf, size_t cap, size_t *got, tm_err *err);

typedef struct tm_pipeline_opts {
    int zstd_level;      /* 1..19; 0 = 3 */
    uint32_t frame_size; /* payload bytes per frame; 0 = 1 MiB */
    size_t queue_frames; /* per-sink queue bound in frames; 0 = 4 */
} tm_pipeline_opts;

/* What the manifest records about an object. */
typedef struct tm_object_digest {
    uint64_t plain_size;  /* plaintext bytes */
    uint64_t stored_size; /* bytes in the repository */
    uint64_t frames;
    char xxh3_128[33]; /* plaintext, canonical (big endian) hex */
    char sha256[65];   /* stored bytes, hex */
} tm_object_digest;

typedef struct tm_sink_result {
    int code; /* 0 = committed */
    char msg[TM_ERR_MSG_MAX];
} tm_sink_result;

typedef struct tm_pipeline_writer tm_pipeline_writer;

/* Start one object. key = the backup's data key; object_key = the repository
 * path, bound into every frame. sinks[] are copied; the pipeline owns them
 * from here on (each gets commit or abort). */
int tm_pipeline_writer_new(tm_pipeline_writer **out, const uint8_t key[TM_KEY_LEN],
                           const char *object_key, const tm_sink *sinks, size_t nsinks,
                           const tm_pipeline_opts *opts, tm_err *err);
/* Feed plaintext. Fails only when every sink has failed (or on an internal
 * error); single sink failures are reported by finish. */
int tm_pipeline_writer_write(tm_pipeline_writer *w, const void *buf, size_t len, tm_err *err);
/* End the object: last frame, drain the queues, commit every healthy sink.
 * Returns 0 when every sink committed; otherwise TM_EIO (or the single sink's
 * code) with "k of n sinks failed: <name>: <why>; ..." and per-sink details in
 * tm_pipeline_writer_result(). digest is filled either way. */
int tm_pipeline_writer_finish(tm_pipeline_writer *w, tm_object_digest *digest, tm_err *err);
const tm_sink_result *tm_pipeline_writer_result(const tm_pipeline_writer *w, size_t i);
/* Frees; aborts every sink if finish was not called. */
void tm_pipeline_writer_free(tm_pipeline_writer *w);
/* Estimated peak heap bytes of a writer with these options (for tests and
 * capacity planning): frames in flight + zstd context. */
size_t tm_pipeline_writer_mem_estimate(const tm_pipeline_opts *opts, size_t nsinks);

/* Convenience: stream fd (to EOF) through a new writer. */
int tm_pipeline_put_fd(const uint8_t key[TM_KEY_LEN], const char *object_key, int fd,
                       const tm_sink *sinks, size_t nsinks, const tm_pipeline_opts *opts,
                       tm_object_digest *digest, tm_sink_result *results, tm_err *err);

/* Read one object back: every tag, the frame order, the last frame, then the
 * zstd stream end, and, when expect is non-NULL, its non-empty digests and
 * non-zero sizes. Plaintext goes to out (NULL = verify only): out is committed
 * only when everything checked out, aborted otherwise. got (may be NULL)
 * receives what was computed. Errors: TM_ECORRUPT / TM_EAUTH
 * "object <key>: frame <n>: <what failed>". */
int tm_pipeline_read(const uint8_t key[TM_KEY_LEN], const char *object_key, tm_source_fn src,
                     void *src_arg, const tm_sink *out, const tm_object_digest *expect,
                     tm_object_digest *got, tm_err *err);

/* Verify without the key: SHA-256 (and size, when non-zero) of the stored
 * bytes against the manifest's values. */
int tm_pipeline_verify_stored(const char *object_key, tm_source_fn src, void *src_arg,
                              const char *expect_sha256, uint64_t expect_stored_size,
                              tm_object_digest *got, tm_err *err);

#endif

/*
 * util.h - small helpers used everywhere: time, randomness, hex, hashing,
 * whole-file I/O and durable file replacement.
 */
#ifndef TM_UTIL_H
#define TM_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

/* Wall clock, unix milliseconds / seconds. */
int64_t tm_now_ms(void);
int64_t tm_now_s(void);
/* Monotonic clock, nanoseconds. */
uint64_t tm_mono_ns(void);
/* The CLOCK_REALTIME deadline ms from now, for pthread_cond_timedwait. */
struct timespec;
void tm_deadline_after_ms(struct timespec *ts, uint64_t ms);

/* Cryptographically secure random bytes (OpenSSL RAND_bytes). */
int tm_random_bytes(void *buf, size_t len);
/* Uniform random in [0, n) from a fast thread-local PRNG (jitter, not secrets). */
uint64_t tm_rand_below(uint64_t n);

/* Lowercase hex of len bytes into out (2*len+1 bytes). */
void tm_hex(const void *buf, size_t len, char *out);
/* SHA-256 of buf as 64 lowercase hex chars + NUL. */
void tm_sha256_hex(const void *buf, size_t len, char out[65]);
/* Constant-time comparison of two NUL-terminated strings (their SHA-256
 * digests are compared, so neither content nor length leaks). 1 if equal. */
int tm_str_eq_ct(const char *a, const char *b);

/* Read a whole file (NUL-terminated, *len excludes the NUL). Caller frees. */
int tm_file_read(const char *path, char **out, size_t *len, tm_err *err);
/* Durably replace path with buf: temp file, fsync, rename, fsync dir. */
int tm_file_write_atomic(const char *path, const void *buf, size_t len, int mode, tm_err *err);
/* fsync a directory, so a rename or create in it survives a crash: a
 * failure is an error (EINVAL, a file system that cannot, is not). */
int tm_fsync_dir(const char *dir, tm_err *err);
/* Writeback of a file written front to back and fsynced at the end, a
 * chunk at a time: call it after writes with the bytes written so far
 * (final = 1 after the last). Each complete chunk's writeback is started
 * (sync_file_range WRITE, no wait), and once more than TM_WRITEBACK_AHEAD
 * is in flight the oldest is waited for. So no large dirty backlog builds
 * up: the final fsync has little left, and no burst stalls other
 * processes' fsyncs on the same file system (ext4 data=ordered: their
 * journal commit waits for our data), while the disk keeps TM_WRITEBACK_AHEAD
 * of work queued (a strict wait per chunk halved throughput). Best effort:
 * errors show at the fsync. */
typedef struct tm_writeback {
    int fd;
    uint64_t started; /* writeback started below this offset */
    uint64_t waited;  /* ... and finished below this one */
} tm_writeback;
#define TM_WRITEBACK_CHUNK ((uint64_t)8 << 20)
#define TM_WRITEBACK_AHEAD (4 * TM_WRITEBACK_CHUNK)
void tm_writeback_progress(tm_writeback *wb, uint64_t written, int final);
/* mkdir -p with mode for created directories. */
int tm_mkdir_p(const char *path, int mode, tm_err *err);
/* The same, giving every directory it creates to uid:gid ((uid_t)-1: no
 * chown), so a restore as root leaves no root-owned parent in the way. */
int tm_mkdir_p_owned(const char *path, int mode, uid_t uid, gid_t gid, tm_err *err);

/* Format unix seconds as "2026-11-24T05:19:32Z" into out (>= 21 bytes). */
void tm_fmt_time(int64_t unix_s, char *out, size_t cap);

#endif

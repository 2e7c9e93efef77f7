#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t tm_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t tm_now_s(void)
{
    return (int64_t)time(NULL);
}

uint64_t tm_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void tm_deadline_after_ms(struct timespec *ts, uint64_t ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int tm_random_bytes(void *buf, size_t len)
{
    return RAND_bytes(buf, (int)len) == 1 ? TM_OK : TM_EINTERNAL;
}

uint64_t tm_rand_below(uint64_t n)
{
    /* xorshift64*, seeded per thread from the CSPRNG. Good enough for jitter. */
    static __thread uint64_t s;
    if (s == 0) {
        if (tm_random_bytes(&s, sizeof(s)) != TM_OK || s == 0) {
            s = tm_mono_ns() | 1;
        }
    }
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    uint64_t r = s * 2685821657736338717ULL;
    return n == 0 ? 0 : r % n;
}

void tm_hex(const void *buf, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = buf;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * len] = '\0';
}

/* OpenSSL 3's one-shot SHA256() looks the digest up on every call (locks,
 * reference counts): on the heartbeat path that was Tidemark's largest own
 * cost. Fetch it once. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void tm_sha256_hex(const void *buf, size_t len, char out[65])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    unsigned int mdlen = 0;
    pthread_once(&sha256_once, sha256_fetch);
    if (sha256_md == NULL || EVP_Digest(buf, len, md, &mdlen, sha256_md, NULL) != 1) {
        SHA256(buf, len, md);
    }
    tm_hex(md, sizeof(md), out);
}

int tm_str_eq_ct(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return 0;
    }
    /* Compare fixed-length digests: comparing the strings themselves would
     * return early on a length mismatch and so tell a guesser the length. */
    unsigned char da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)a, strlen(a), da);
    SHA256((const unsigned char *)b, strlen(b), db);
    int eq = CRYPTO_memcmp(da, db, sizeof(da)) == 0;
    OPENSSL_cleanse(da, sizeof(da));
    OPENSSL_cleanse(db, sizeof(db));
    return eq;
}

int tm_file_read(const char *path, char **out, size_t *len, tm_err *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return tm_err_set(err, tm_err_from_errno(errno), "open %s: %s", path, strerror(errno));
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        fclose(f);
        return tm_err_set(err, TM_ENOMEM, "read %s: out of memory", path);
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return tm_err_set(err, TM_ENOMEM, "read %s: out of memory", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) {
            break;
        }
    }
    if (ferror(f)) {
        int e = errno;
        free(buf);
        fclose(f);
        return tm_err_set(err, tm_err_from_errno(e), "read %s: %s", path, strerror(e));
    }
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    if (len != NULL) {
        *len = n;
    }
    return TM_OK;
}

int tm_file_write_atomic(const char *path, const void *buf, size_t len, int mode, tm_err *err)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    /* O_EXCL: never write into a file another writer holds open; a temp
     * left by a crash (same pid after a reboot) is removed and made anew. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0 && errno == EEXIST && unlink(tmp) == 0) {
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    }
    if (fd < 0) {
        return tm_err_set(err, tm_err_from_errno(errno), "create %s: %s", tmp, strerror(errno));
    }
    const char *p = buf;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            int e = errno;
            close(fd);
            unlink(tmp);
            return tm_err_set(err, tm_err_from_errno(e), "write %s: %s", tmp, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    /* The descriptor is closed whatever fsync said (a failed fsync used to
     * leak it), and a failed close (EIO, EDQUOT on NFS) fails the write. */
    int synced = fsync(fd) == 0 ? 0 : errno;
    int closed = close(fd) == 0 ? 0 : errno;
    if (synced != 0 || closed != 0) {
        int e = synced != 0 ? synced : closed;
        unlink(tmp);
        return tm_err_set(err, tm_err_from_errno(e), "%s %s: %s", synced != 0 ? "fsync" : "close",
                          tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return tm_err_set(err, tm_err_from_errno(e), "rename %s: %s", path, strerror(e));
    }
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    return tm_fsync_dir(dirname(dir), err);
}

int tm_fsync_dir(const char *dir, tm_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return tm_err_set(err, tm_err_from_errno(errno), "open directory %s: %s", dir,
                          strerror(errno));
    }
    /* EINVAL: a file system that cannot sync a directory (nothing to wait
     * for); anything else means the rename may not survive a crash. */
    int rc = TM_OK;
    if (fsync(fd) != 0 && errno != EINVAL) {
        rc = tm_err_set(err, tm_err_from_errno(errno), "fsync directory %s: %s", dir,
                        strerror(errno));
    }
    if (close(fd) != 0 && rc == TM_OK) {
        rc = tm_err_set(err, tm_err_from_errno(errno), "close directory %s: %s", dir,
                        strerror(errno));
    }
    return rc;
}

int tm_mkdir_p(const char *path, int mode, tm_err *err)
{
    return tm_mkdir_p_owned(path, mode, (uid_t)-1, (gid_t)-1, err);
}

int tm_mkdir_p_owned(const char *path, int mode, uid_t uid, gid_t gid, tm_err *err)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf)) {
        return tm_err_set(err, TM_EINVAL, "mkdir: bad path '%s'", path);
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, (mode_t)mode) == 0) {
                if (uid != (uid_t)-1 && chown(buf, uid, gid) != 0) {
                    return tm_err_set(err, tm_err_from_errno(errno), "chown %s: %s", buf,
                                      strerror(errno));
                }
            } else if (errno != EEXIST) {
                return tm_err_set(err, tm_err_from_errno(errno), "mkdir %s: %s", buf,
                                  strerror(errno));
            }
            buf[i] = c;
        }
    }
    return TM_OK;
}

void tm_fmt_time(int64_t unix_s, char *out, size_t cap)
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void tm_writeback_progress(tm_writeback *wb, uint64_t written, int final)
{
    if (wb->fd < 0) {
        return;
    }
    while (written > wb->started && (written - wb->started >= TM_WRITEBACK_CHUNK || final)) {
        uint64_t len = written - wb->started;
        len = len < TM_WRITEBACK_CHUNK ? len : TM_WRITEBACK_CHUNK;
        sync_file_range(wb->fd, (off_t)wb->started, (off_t)len, SYNC_FILE_RANGE_WRITE);
        wb->started += len;
        if (!final && wb->started - wb->waited > TM_WRITEBACK_AHEAD) {
            uint64_t upto = wb->started - TM_WRITEBACK_AHEAD;
            sync_file_range(wb->fd, (off_t)wb->waited, (off_t)(upto - wb->waited),
                            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                SYNC_FILE_RANGE_WAIT_AFTER);
            wb->waited = upto;
        }
    }
}

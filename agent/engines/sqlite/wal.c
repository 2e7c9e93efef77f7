/*
 * wal.c - the SQLite WAL format reader (see wal.h). Field layout and
 * checksum as in SQLite's own wal.c: every field is big-endian; the
 * checksum runs over 32-bit words read in the byte order the magic names.
 */
#include "agent/engines/sqlite/wal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

uint32_t tm_sqlite_wal_be32(const uint8_t *p)
{
    return get32(p);
}

static uint32_t get32le(const uint8_t *p)
{
    return ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
}

void tm_sqlite_wal_cksum(int big_endian, const uint8_t *p, size_t n, uint32_t s[2])
{
    uint32_t s1 = s[0], s2 = s[1];
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint32_t a = big_endian ? get32(p + i) : get32le(p + i);
        uint32_t b = big_endian ? get32(p + i + 4) : get32le(p + i + 4);
        s1 += a + s2;
        s2 += b + s1;
    }
    s[0] = s1;
    s[1] = s2;
}

static int big_endian(const tm_sqlite_wal_hdr *h)
{
    return h->magic == TM_SQLITE_WAL_MAGIC_BE;
}

int tm_sqlite_wal_hdr_parse(const uint8_t *buf, size_t len, tm_sqlite_wal_hdr *h, tm_err *err)
{
    if (len < TM_SQLITE_WAL_HDR) {
        return tm_err_set(err, TM_EPROTO, "WAL header: %zu bytes, need %d", len, TM_SQLITE_WAL_HDR);
    }
    tm_sqlite_wal_hdr x = {
        .magic = get32(buf),
        .version = get32(buf + 4),
        .page_size = get32(buf + 8),
        .ckpt_seq = get32(buf + 12),
        .salt1 = get32(buf + 16),
        .salt2 = get32(buf + 20),
        .cksum1 = get32(buf + 24),
        .cksum2 = get32(buf + 28),
    };
    if (x.magic != TM_SQLITE_WAL_MAGIC_LE && x.magic != TM_SQLITE_WAL_MAGIC_BE) {
        return tm_err_set(err, TM_EPROTO, "WAL header: bad magic 0x%08x (not a WAL file)", x.magic);
    }
    if (x.version != TM_SQLITE_WAL_VERSION) {
        return tm_err_set(err, TM_EPROTO, "WAL header: unknown format version %u", x.version);
    }
    if (x.page_size < 512 || x.page_size > 65536 || (x.page_size & (x.page_size - 1)) != 0) {
        return tm_err_set(err, TM_EPROTO, "WAL header: bad page size %u", x.page_size);
    }
    uint32_t s[2] = {0, 0};
    tm_sqlite_wal_cksum(big_endian(&x), buf, 24, s);
    if (s[0] != x.cksum1 || s[1] != x.cksum2) {
        return tm_err_set(err, TM_ECORRUPT, "WAL header: checksum mismatch");
    }
    *h = x;
    return TM_OK;
}

void tm_sqlite_wal_begin(tm_sqlite_wal *w, const tm_sqlite_wal_hdr *h)
{
    memset(w, 0, sizeof(*w));
    w->h = *h;
    w->s1 = h->cksum1;
    w->s2 = h->cksum2;
}

void tm_sqlite_wal_resume(tm_sqlite_wal *w, const tm_sqlite_wal_hdr *h, uint64_t frames,
                          uint32_t s1, uint32_t s2, uint64_t commit, uint32_t db_size)
{
    tm_sqlite_wal_begin(w, h);
    if (frames > 0) {
        w->s1 = s1;
        w->s2 = s2;
    }
    w->frames = frames;
    w->commit = commit;
    w->db_size = db_size;
}

size_t tm_sqlite_wal_frame_size(const tm_sqlite_wal_hdr *h)
{
    return TM_SQLITE_WAL_FRAME_HDR + (size_t)h->page_size;
}

uint64_t tm_sqlite_wal_frame_offset(const tm_sqlite_wal_hdr *h, uint64_t n)
{
    return TM_SQLITE_WAL_HDR + (n - 1) * (uint64_t)tm_sqlite_wal_frame_size(h);
}

int tm_sqlite_wal_next(tm_sqlite_wal *w, const uint8_t *frame, size_t len, tm_sqlite_wal_frame *out)
{
    if (len != tm_sqlite_wal_frame_size(&w->h)) {
        return 0;
    }
    uint32_t pgno = get32(frame), db_size = get32(frame + 4);
    /* Salts first: a frame left over from an earlier use of the file. */
    if (pgno == 0 || get32(frame + 8) != w->h.salt1 || get32(frame + 12) != w->h.salt2) {
        return 0;
    }
    uint32_t s[2] = {w->s1, w->s2};
    tm_sqlite_wal_cksum(big_endian(&w->h), frame, 8, s);
    tm_sqlite_wal_cksum(big_endian(&w->h), frame + TM_SQLITE_WAL_FRAME_HDR, w->h.page_size, s);
    if (s[0] != get32(frame + 16) || s[1] != get32(frame + 20)) {
        return 0;
    }
    w->s1 = s[0];
    w->s2 = s[1];
    w->frames++;
    if (db_size != 0) {
        w->commit = w->frames;
        w->db_size = db_size;
    }
    if (out != NULL) {
        out->pgno = pgno;
        out->db_size = db_size;
        out->cksum1 = s[0];
        out->cksum2 = s[1];
    }
    return 1;
}

int tm_sqlite_wal_same_wal(const tm_sqlite_wal_hdr *a, const tm_sqlite_wal_hdr *b)
{
    return a->magic == b->magic && a->page_size == b->page_size && a->ckpt_seq == b->ckpt_seq &&
           a->salt1 == b->salt1 && a->salt2 == b->salt2;
}

int tm_sqlite_wal_scan(const uint8_t *buf, size_t len, tm_sqlite_wal *w, tm_err *err)
{
    tm_sqlite_wal_hdr h;
    int rc = tm_sqlite_wal_hdr_parse(buf, len, &h, err);
    if (rc != TM_OK) {
        return rc;
    }
    tm_sqlite_wal_begin(w, &h);
    size_t fs = tm_sqlite_wal_frame_size(&h);
    size_t off = TM_SQLITE_WAL_HDR;
    while (len - off >= fs && tm_sqlite_wal_next(w, buf + off, fs, NULL)) {
        off += fs;
    }
    return TM_OK;
}

int tm_sqlite_wal_pread(int fd, void *buf, size_t len, uint64_t off, size_t *got, tm_err *err)
{
    size_t done = 0;
    while (done < len) {
        ssize_t r = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            return tm_err_set(err, TM_EIO, "read WAL at %llu: %s", (unsigned long long)(off + done),
                              strerror(errno));
        }
        if (r == 0) {
            break;
        }
        done += (size_t)r;
    }
    *got = done;
    return TM_OK;
}

int tm_sqlite_wal_read_hdr(int fd, tm_sqlite_wal_hdr *h, tm_err *err)
{
    uint8_t buf[TM_SQLITE_WAL_HDR];
    size_t got = 0;
    int rc = tm_sqlite_wal_pread(fd, buf, sizeof(buf), 0, &got, err);
    if (rc != TM_OK) {
        return rc;
    }
    if (got < sizeof(buf)) {
        return tm_err_set(err, TM_ENOENT, "WAL has no header (%zu bytes)", got);
    }
    return tm_sqlite_wal_hdr_parse(buf, got, h, err);
}

int tm_sqlite_wal_scan_fd(int fd, tm_sqlite_wal *w, uint64_t max_frames, tm_err *err)
{
    size_t fs = tm_sqlite_wal_frame_size(&w->h);
    uint8_t *buf = malloc(fs);
    if (buf == NULL) {
        return tm_err_set(err, TM_ENOMEM, "WAL frame buffer");
    }
    int rc = TM_OK;
    for (uint64_t n = 0; max_frames == 0 || n < max_frames; n++) {
        size_t got = 0;
        rc = tm_sqlite_wal_pread(fd, buf, fs, tm_sqlite_wal_frame_offset(&w->h, w->frames + 1),
                                 &got, err);
        if (rc != TM_OK || got < fs || !tm_sqlite_wal_next(w, buf, fs, NULL)) {
            break;
        }
    }
    free(buf);
    return rc;
}

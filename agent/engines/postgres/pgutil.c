/*
 * pgutil.c - small PostgreSQL facts as code: LSN text, WAL segment names,
 * backup_label, backup ids and recovery target times.
 */
#include "agent/engines/postgres/pg.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int tm_pg_lsn_parse(const char *s, uint64_t *out)
{
    if (s == NULL) {
        return TM_EINVAL;
    }
    const char *slash = strchr(s, '/');
    if (slash == NULL || slash == s || slash - s > 8 || slash[1] == '\0' || strlen(slash + 1) > 8) {
        return TM_EINVAL;
    }
    uint64_t hi = 0, lo = 0;
    for (const char *p = s; p < slash; p++) {
        int d = *p >= '0' && *p <= '9'   ? *p - '0'
                : *p >= 'A' && *p <= 'F' ? *p - 'A' + 10
                : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10
                                         : -1;
        if (d < 0) {
            return TM_EINVAL;
        }
        hi = hi * 16 + (uint64_t)d;
    }
    for (const char *p = slash + 1; *p; p++) {
        int d = *p >= '0' && *p <= '9'   ? *p - '0'
                : *p >= 'A' && *p <= 'F' ? *p - 'A' + 10
                : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10
                                         : -1;
        if (d < 0) {
            return TM_EINVAL;
        }
        lo = lo * 16 + (uint64_t)d;
    }
    *out = hi << 32 | lo;
    return TM_OK;
}

void tm_pg_lsn_fmt(uint64_t lsn, char *out, size_t cap)
{
    snprintf(out, cap, "%X/%X", (unsigned)(lsn >> 32), (unsigned)(lsn & 0xffffffffu));
}

/* PostgreSQL's XLogFileName: timeline, then the segment number split into
 * "log id" and "segment in log" at 4 GiB of WAL. */
void tm_pg_wal_name(uint32_t tli, uint64_t segno, uint32_t seg_size, char out[25])
{
    uint64_t per = 0x100000000ull / seg_size;
    snprintf(out, 25, "%08X%08X%08X", tli, (unsigned)(segno / per), (unsigned)(segno % per));
}

int tm_pg_wal_parse(const char *name, uint32_t seg_size, uint32_t *tli, uint64_t *segno)
{
    if (name == NULL || strlen(name) != 24 || strspn(name, "0123456789ABCDEF") != 24 ||
        seg_size == 0) {
        return TM_EINVAL;
    }
    char part[9];
    uint64_t v[3];
    for (int i = 0; i < 3; i++) {
        memcpy(part, name + 8 * i, 8);
        part[8] = '\0';
        v[i] = strtoull(part, NULL, 16);
    }
    uint64_t per = 0x100000000ull / seg_size;
    if (v[2] >= per) {
        return TM_EINVAL;
    }
    *tli = (uint32_t)v[0];
    *segno = v[1] * per + v[2];
    return TM_OK;
}

/* The value after "KEY: " on its line, copied into out. */
static int label_field(const char *text, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    for (const char *p = text; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, key, kl) == 0 && p[kl] == ':' && p[kl + 1] == ' ') {
            const char *v = p + kl + 2;
            size_t n = strcspn(v, "\n");
            if (n >= cap) {
                n = cap - 1;
            }
            memcpy(out, v, n);
            out[n] = '\0';
            return 1;
        }
    }
    return 0;
}

int tm_pg_label_parse(const char *text, tm_pg_label *out, tm_err *err)
{
    memset(out, 0, sizeof(*out));
    char v[256];
    if (text == NULL || !label_field(text, "START WAL LOCATION", v, sizeof(v))) {
        return tm_err_set(err, TM_EPROTO, "backup_label: no START WAL LOCATION line");
    }
    /* "0/2000028 (file 000000010000000000000002)" */
    char lsn[32] = "";
    if (sscanf(v, "%31s (file %24[0-9A-F])", lsn, out->start_wal) != 2 ||
        tm_pg_lsn_parse(lsn, &out->start_lsn) != TM_OK) {
        return tm_err_set(err, TM_EPROTO, "backup_label: START WAL LOCATION '%.60s' is malformed",
                          v);
    }
    if (!label_field(text, "CHECKPOINT LOCATION", v, sizeof(v)) ||
        tm_pg_lsn_parse(v, &out->checkpoint_lsn) != TM_OK) {
        return tm_err_set(err, TM_EPROTO, "backup_label: CHECKPOINT LOCATION missing or malformed");
    }
    if (!label_field(text, "START TIMELINE", v, sizeof(v))) {
        return tm_err_set(err, TM_EPROTO, "backup_label: no START TIMELINE line");
    }
    char *end = NULL;
    unsigned long tli = strtoul(v, &end, 10);
    if (end == v || *end != '\0' || tli == 0 || tli > UINT32_MAX) {
        return tm_err_set(err, TM_EPROTO, "backup_label: START TIMELINE '%.20s' is malformed", v);
    }
    out->timeline = (uint32_t)tli;
    label_field(text, "BACKUP METHOD", out->method, sizeof(out->method));
    label_field(text, "LABEL", out->label, sizeof(out->label));
    return TM_OK;
}

void tm_pg_backup_id(int64_t t, int incremental, char *out, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y%m%dT%H%M%SZ", &tm);
    snprintf(out, cap, "%s-%s", ts, incremental ? "incr" : "full");
}

int tm_pg_time_parse(const char *s, int64_t *out)
{
    if (s == NULL) {
        return TM_EINVAL;
    }
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    int n = 0;
    if (sscanf(s, "%4d-%2d-%2d%*[ T]%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6) {
        return TM_EINVAL;
    }
    const char *p = s + n;
    int frac = 0;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9') {
            return TM_EINVAL;
        }
        while (*p >= '0' && *p <= '9') {
            frac |= *p != '0';
            p++;
        }
    }
    int off = 0; /* seconds east of UTC */
    if (*p == 'Z' && p[1] == '\0') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, hh = 0, mm = 0, k = 0;
        p++;
        if (sscanf(p, "%2d%n", &hh, &k) != 1 || k != 2) {
            return TM_EINVAL;
        }
        p += 2;
        if (*p == ':') {
            p++;
        }
        if (*p != '\0') {
            if (sscanf(p, "%2d%n", &mm, &k) != 1 || k != 2) {
                return TM_EINVAL;
            }
            p += 2;
        }
        if (hh > 14 || mm > 59) {
            return TM_EINVAL;
        }
        off = sign * (hh * 3600 + mm * 60);
    } else {
        /* No zone: refused, because the database's and the agent's zones
         * may differ and a restore to the wrong hour is silent. */
        return TM_EINVAL;
    }
    if (*p != '\0' || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
        tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60) {
        return TM_EINVAL;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = (int64_t)timegm(&tm) - off + (frac ? 1 : 0);
    return TM_OK;
}

void tm_pg_time_fmt(int64_t t, char *out, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, cap, "%Y-%m-%d %H:%M:%S+00", &tm);
}

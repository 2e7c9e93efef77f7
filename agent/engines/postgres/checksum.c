/*
 * checksum.c - PostgreSQL's data page checksum (src/include/storage/
 * checksum_impl.h): 32 parallel FNV-1a-like lanes over the 8 KiB page with
 * pd_checksum zeroed, folded, mixed with the block number, reduced to
 * 1..65535. Used to validate pages while a backup reads them, the way
 * pg_checksums --check does offline.
 */
#include "agent/engines/postgres/pg.h"

#include <string.h>

#define N_SUMS 32
#define FNV_PRIME 16777619u

static const uint32_t base_offsets[N_SUMS] = {
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
    0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
    0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
    0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
};

static inline uint32_t comp(uint32_t sum, uint32_t value)
{
    uint32_t t = sum ^ value;
    return t * FNV_PRIME ^ (t >> 17);
}

uint16_t tm_pg_checksum_page(const uint8_t *page, uint32_t blkno)
{
    /* A copy: the page must be read as uint32 words (host order, as the
     * server wrote them) with pd_checksum (bytes 8..9) zeroed. */
    uint32_t w[TM_PG_BLCKSZ / 4];
    memcpy(w, page, TM_PG_BLCKSZ);
    memset((uint8_t *)w + 8, 0, 2); /* bytes, not a uint16_t store: no aliasing games */
    uint32_t sums[N_SUMS];
    memcpy(sums, base_offsets, sizeof(sums));
    for (uint32_t i = 0; i < TM_PG_BLCKSZ / (4 * N_SUMS); i++) {
        for (uint32_t j = 0; j < N_SUMS; j++) {
            sums[j] = comp(sums[j], w[i * N_SUMS + j]);
        }
    }
    for (uint32_t i = 0; i < 2; i++) {
        for (uint32_t j = 0; j < N_SUMS; j++) {
            sums[j] = comp(sums[j], 0);
        }
    }
    uint32_t r = 0;
    for (uint32_t j = 0; j < N_SUMS; j++) {
        r ^= sums[j];
    }
    r ^= blkno;
    return (uint16_t)((r % 65535) + 1);
}

int tm_pg_page_bad(const uint8_t *page, uint32_t blkno, uint64_t start_lsn, uint16_t *stored,
                   uint16_t *computed)
{
    uint16_t upper, chk;
    uint32_t lsn_hi, lsn_lo;
    memcpy(&lsn_hi, page, 4);
    memcpy(&lsn_lo, page + 4, 4);
    memcpy(&chk, page + 8, 2);
    memcpy(&upper, page + 14, 2);
    if (upper == 0) {
        /* PageIsNew: never initialised; valid only if all zero, which the
         * server checks itself when it reads the page. */
        return 0;
    }
    uint64_t lsn = (uint64_t)lsn_hi << 32 | lsn_lo;
    if (start_lsn != 0 && lsn >= start_lsn) {
        /* Written after the backup started: possibly torn in our read, and
         * replayed from WAL (full-page image) on restore anyway. */
        return 0;
    }
    uint16_t c = tm_pg_checksum_page(page, blkno);
    if (stored != NULL) {
        *stored = chk;
    }
    if (computed != NULL) {
        *computed = c;
    }
    return c != chk;
}

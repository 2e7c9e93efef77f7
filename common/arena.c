#include "common/arena.h"
#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_BLOCK 8192

typedef struct block {
    struct block *next;
    size_t cap;
    size_t used;
    _Alignas(16) unsigned char data[];
} block;

struct tm_arena {
    block *head;
    ProtobufCAllocator pb;
};

static void *pb_alloc(void *data, size_t n)
{
    return tm_arena_alloc(data, n);
}

static void pb_free(void *data, void *p)
{
    (void)data;
    (void)p;
}

static block *block_new(size_t cap)
{
    block *b = malloc(sizeof(*b) + cap);
    if (b != NULL) {
        b->next = NULL;
        b->cap = cap;
        b->used = 0;
    }
    return b;
}

int tm_arena_new(tm_arena **out)
{
    tm_arena *a = calloc(1, sizeof(*a));
    if (a == NULL || (a->head = block_new(ARENA_BLOCK)) == NULL) {
        free(a);
        return TM_ENOMEM;
    }
    a->pb.alloc = pb_alloc;
    a->pb.free = pb_free;
    a->pb.allocator_data = a;
    *out = a;
    return TM_OK;
}

void tm_arena_reset(tm_arena *a)
{
    block *b = a->head;
    /* Keep the oldest (last) block: it is the standard size. */
    while (b->next != NULL) {
        block *n = b->next;
        free(b);
        b = n;
    }
    b->used = 0;
    a->head = b;
}

void tm_arena_free(tm_arena *a)
{
    if (a == NULL) {
        return;
    }
    block *b = a->head;
    while (b != NULL) {
        block *n = b->next;
        free(b);
        b = n;
    }
    free(a);
}

void *tm_arena_alloc(tm_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n == 0) {
        n = 16;
    }
    block *b = a->head;
    if (b->cap - b->used < n) {
        size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        block *nb = block_new(cap);
        if (nb == NULL) {
            return NULL;
        }
        nb->next = b;
        a->head = nb;
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

char *tm_arena_strdup(tm_arena *a, const char *s)
{
    if (s == NULL) {
        return NULL;
    }
    size_t n = strlen(s) + 1;
    char *p = tm_arena_alloc(a, n);
    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

char *tm_arena_printf(tm_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return NULL;
    }
    char *p = tm_arena_alloc(a, (size_t)n + 1);
    if (p != NULL) {
        va_start(ap, fmt);
        vsnprintf(p, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return p;
}

ProtobufCAllocator *tm_arena_allocator(tm_arena *a)
{
    return &a->pb;
}

/*
 * arena.h - a per-request bump allocator.
 *
 * RPC handlers build their replies from many small strings and repeated
 * fields whose lifetime is exactly one call; an arena frees them all at once
 * and is plugged into protobuf-c as a ProtobufCAllocator so unpacked requests
 * live there too.
 */
#ifndef TM_ARENA_H
#define TM_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

typedef struct tm_arena tm_arena;

int tm_arena_new(tm_arena **out);
void tm_arena_free(tm_arena *a);
/* Free everything allocated so far but keep the first block for reuse. */
void tm_arena_reset(tm_arena *a);
/* Zeroed, 16-byte aligned memory. NULL only on out-of-memory. */
void *tm_arena_alloc(tm_arena *a, size_t n);
char *tm_arena_strdup(tm_arena *a, const char *s);
char *tm_arena_printf(tm_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A protobuf-c allocator backed by this arena (free is a no-op). */
ProtobufCAllocator *tm_arena_allocator(tm_arena *a);

#endif

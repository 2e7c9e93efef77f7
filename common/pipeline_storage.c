/*
 * pipeline_storage.c - adapters between the pipeline and common/storage.h.
 *
 * Kept apart from pipeline.c on purpose: the pipeline, its tests and the fuzz
 * target link without any storage backend; only code that actually talks to
 * a repository pulls in this file (and with it the backends).
 */
#include "common/pipeline.h"
#include "common/storage.h"

static int storage_sink_write(void *arg, const void *buf, size_t len, tm_err *err)
{
    return tm_storage_write(arg, buf, len, err);
}

static int storage_sink_commit(void *arg, tm_err *err)
{
    return tm_storage_put_commit(arg, err);
}

static void storage_sink_abort(void *arg)
{
    tm_storage_put_abort(arg);
}

void tm_sink_from_storage_writer(tm_sink *out, tm_storage_writer *w, const char *name)
{
    *out = (tm_sink){storage_sink_write, storage_sink_commit, storage_sink_abort, w, name};
}

int tm_source_storage_reader(void *arg, void *buf, size_t cap, size_t *got, tm_err *err)
{
    return tm_storage_read(arg, buf, cap, got, err);
}

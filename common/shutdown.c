/*
 * shutdown.c - the shutdown watchdog shared by the agent and coordinator.
 */
#include "common/shutdown.h"
#include "common/log.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

typedef struct watchdog {
    const char *comp;
    unsigned grace_ms;
} watchdog;

static void *watchdog_main(void *arg)
{
    watchdog w = *(watchdog *)arg;
    free(arg);
    struct timespec ts = {.tv_sec = w.grace_ms / 1000,
                          .tv_nsec = (long)(w.grace_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
    tm_error(w.comp,
             "event=shutdown_stuck grace_ms=%u msg=\"exiting without a clean teardown; the "
             "state was already safe\"",
             w.grace_ms);
    _exit(1);
    return NULL;
}

void tm_shutdown_watchdog(const char *comp, unsigned grace_ms)
{
    watchdog *w = malloc(sizeof(*w));
    pthread_t t;
    if (w == NULL) {
        return;
    }
    w->comp = comp;
    w->grace_ms = grace_ms;
    if (pthread_create(&t, NULL, watchdog_main, w) != 0) {
        free(w);
        return;
    }
    pthread_detach(t);
}

/*
 * tls.h - all nng TLS setup lives in tls.c (nng's TLS is mbedTLS inside
 * libnng on Debian; libpq and libcurl use OpenSSL; the same PEM files serve
 * both).
 */
#ifndef TM_TLS_H
#define TM_TLS_H

#include <nng/nng.h>

#include "common/config.h"
#include "common/err.h"

/* Attach a server TLS config (own cert, optional client-cert CA / mutual TLS). */
int tm_tls_listener_setup(nng_listener l, const tm_tls_conf *conf, tm_err *err);
/* Attach a client TLS config (pinned CA, optional client cert, server name). */
int tm_tls_dialer_setup(nng_dialer d, const tm_tls_conf *conf, const char *url, tm_err *err);

#endif

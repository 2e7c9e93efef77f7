/*
 * tls.c - the only file that configures nng's TLS.
 *
 * Certificates and keys are read as PEM text and handed to nng (mbedTLS), so
 * the files are the same ones libpq and libcurl (OpenSSL) read.
 */
#include "common/tls.h"
#include "common/util.h"

#include <nng/supplemental/tls/tls.h>
#include <stdlib.h>
#include <string.h>

static int tls_err(tm_err *err, int rv, const char *what, const char *path)
{
    return tm_err_set(err, TM_ECONFIG, "tls: %s%s%s: %s", what, path ? " " : "", path ? path : "",
                      nng_strerror(rv));
}

static int load_own_cert(nng_tls_config *cfg, const tm_tls_conf *conf, tm_err *err)
{
    char *cert = NULL, *key = NULL;
    int rc = tm_file_read(conf->cert_file, &cert, NULL, err);
    if (rc == TM_OK) {
        rc = tm_file_read(conf->key_file, &key, NULL, err);
    }
    if (rc != TM_OK) {
        free(cert);
        return tm_err_prefix(err, "tls: certificate");
    }
    int rv = nng_tls_config_own_cert(cfg, cert, key, NULL);
    memset(key, 0, strlen(key));
    free(key);
    free(cert);
    if (rv != 0) {
        return tls_err(err, rv, "certificate/key", conf->cert_file);
    }
    return TM_OK;
}

int tm_tls_listener_setup(nng_listener l, const tm_tls_conf *conf, tm_err *err)
{
    nng_tls_config *cfg;
    int rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_SERVER);
    if (rv != 0) {
        return tls_err(err, rv, "alloc server config", NULL);
    }
    int rc = TM_OK;
    if (conf == NULL || conf->cert_file == NULL || conf->key_file == NULL) {
        rc = tm_err_set(err, TM_ECONFIG,
                        "tls: a tls+tcp:// listener needs tls.cert_file and "
                        "tls.key_file");
        goto out;
    }
    if ((rc = load_own_cert(cfg, conf, err)) != TM_OK) {
        goto out;
    }
    if (conf->ca_file != NULL) {
        if ((rv = nng_tls_config_ca_file(cfg, conf->ca_file)) != 0) {
            rc = tls_err(err, rv, "CA file", conf->ca_file);
            goto out;
        }
    }
    nng_tls_auth_mode mode = NNG_TLS_AUTH_MODE_NONE;
    if (conf->require_client_cert) {
        if (conf->ca_file == NULL) {
            rc = tm_err_set(err, TM_ECONFIG,
                            "tls: require_client_cert needs tls.ca_file (the CA of client certs)");
            goto out;
        }
        mode = NNG_TLS_AUTH_MODE_REQUIRED;
    } else if (conf->ca_file != NULL) {
        mode = NNG_TLS_AUTH_MODE_OPTIONAL;
    }
    if ((rv = nng_tls_config_auth_mode(cfg, mode)) != 0) {
        rc = tls_err(err, rv, "auth mode", NULL);
        goto out;
    }
    if ((rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, cfg)) != 0) {
        rc = tls_err(err, rv, "attach to listener", NULL);
    }
out:
    nng_tls_config_free(cfg); /* the listener holds its own reference */
    return rc;
}

/* "tls+tcp://host:port" -> host (IPv6 brackets stripped). */
static void url_host(const char *url, char *out, size_t cap)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t n = 0;
    if (*p == '[') {
        p++;
        while (p[n] && p[n] != ']') {
            n++;
        }
    } else {
        while (p[n] && p[n] != ':' && p[n] != '/') {
            n++;
        }
    }
    if (n >= cap) {
        n = cap - 1;
    }
    memcpy(out, p, n);
    out[n] = '\0';
}

int tm_tls_dialer_setup(nng_dialer d, const tm_tls_conf *conf, const char *url, tm_err *err)
{
    nng_tls_config *cfg;
    int rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT);
    if (rv != 0) {
        return tls_err(err, rv, "alloc client config", NULL);
    }
    int rc = TM_OK;
    if (conf == NULL || conf->ca_file == NULL) {
        rc = tm_err_set(err, TM_ECONFIG,
                        "tls: a tls+tcp:// coordinator needs tls.ca_file to pin its CA");
        goto out;
    }
    if ((rv = nng_tls_config_ca_file(cfg, conf->ca_file)) != 0) {
        rc = tls_err(err, rv, "CA file", conf->ca_file);
        goto out;
    }
    if ((rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED)) != 0) {
        rc = tls_err(err, rv, "auth mode", NULL);
        goto out;
    }
    char host[256];
    if (conf->server_name != NULL) {
        snprintf(host, sizeof(host), "%s", conf->server_name);
    } else {
        url_host(url, host, sizeof(host));
    }
    if ((rv = nng_tls_config_server_name(cfg, host)) != 0) {
        rc = tls_err(err, rv, "server name", host);
        goto out;
    }
    if (conf->cert_file != NULL && conf->key_file != NULL) {
        if ((rc = load_own_cert(cfg, conf, err)) != TM_OK) {
            goto out;
        }
    }
    if ((rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg)) != 0) {
        rc = tls_err(err, rv, "attach to dialer", NULL);
    }
out:
    nng_tls_config_free(cfg);
    return rc;
}

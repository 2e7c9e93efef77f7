/*
 * tm_rpc_garbage - throw hostile bytes at an RPC endpoint (integration tests).
 *
 * Usage: tm_rpc_garbage URL COUNT [SEED]
 *
 * Sends COUNT payloads over a REQ socket, cycling through: random bytes,
 * truncated valid envelopes, wrong protocol versions, unknown methods,
 * valid envelopes with garbage bodies, bogus credentials, and a few
 * oversized messages; plus raw TCP connections that send junk instead of
 * the SP handshake. Prints counts and exits 0 if it could send everything
 * (what the server did about it is for the test to check).
 */
#include "common/util.h"

#include "tidemark.pb-c.h"

#include <arpa/inet.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static uint64_t rng;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

static void fill(uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        b[i] = (uint8_t)rnd();
    }
}

static size_t envelope(uint8_t *out, size_t cap, int kind)
{
    static const char *methods[] = {"Coordinator.Heartbeat", "Coordinator.RegisterAgent",
                                    "Admin.ListAgents",      "Admin.RemoveAgent",
                                    "Nope.Nothing",          ""};
    Tidemark__Envelope env = TIDEMARK__ENVELOPE__INIT;
    Tidemark__Credential cred = TIDEMARK__CREDENTIAL__INIT;
    uint8_t body[256];
    char id[40], secret[80];
    env.has_version = 1;
    env.version = kind == 1 ? rnd() % 5 + 2 : 1;
    env.method = (char *)methods[rnd() % 6];
    env.has_body = 1;
    env.body.len = rnd() % sizeof(body);
    fill(body, env.body.len);
    env.body.data = body;
    if (kind == 2) {
        snprintf(id, sizeof(id), "agt-%08x", rnd());
        snprintf(secret, sizeof(secret), "%08x%08x", rnd(), rnd());
        cred.agent_id = id;
        cred.agent_secret = secret;
        cred.admin_token = secret;
        env.credential = &cred;
    }
    size_t n = tidemark__envelope__get_packed_size(&env);
    if (n > cap) {
        return 0;
    }
    tidemark__envelope__pack(&env, out);
    return n;
}

static int tcp_connect(const char *url)
{
    const char *p = strstr(url, "://");
    const char *colon = p ? strrchr(p + 3, ':') : NULL;
    if (colon == NULL || strncmp(url, "tcp://", 6) != 0) {
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* SP over TCP by hand: 8-byte handshake as a REQ peer (protocol 0x30), then
 * a message: u64 length, u32 request id (high bit set), body. Returns 1 if
 * the server answered (it must not), 0 otherwise. */
static int raw_sp_send(const char *url, const uint8_t *body, size_t n)
{
    int fd = tcp_connect(url);
    if (fd < 0) {
        return 0;
    }
    uint8_t hs[8] = {0, 'S', 'P', 0, 0, 0x30, 0, 0}, peer[8];
    uint8_t hdr[12];
    uint64_t len = n + 4;
    for (int i = 0; i < 8; i++) {
        hdr[i] = (uint8_t)(len >> (56 - 8 * i));
    }
    hdr[8] = 0x80;
    hdr[9] = hdr[10] = 0;
    hdr[11] = 1;
    int answered = 0;
    if (send(fd, hs, sizeof(hs), MSG_NOSIGNAL) == 8 &&
        recv(fd, peer, sizeof(peer), MSG_WAITALL) == 8 &&
        send(fd, hdr, sizeof(hdr), MSG_NOSIGNAL) == 12) {
        size_t off = 0;
        while (off < n) {
            ssize_t w = send(fd, body + off, n - off, MSG_NOSIGNAL);
            if (w <= 0) {
                break; /* the server hung up on us: expected */
            }
            off += (size_t)w;
        }
        uint8_t r[16];
        answered = recv(fd, r, sizeof(r), 0) > 0;
    }
    close(fd);
    return answered;
}

static int raw_tcp_junk(const char *url, int count)
{
    const char *p = strstr(url, "://");
    const char *colon = p ? strrchr(p + 3, ':') : NULL;
    if (colon == NULL || strncmp(url, "tcp://", 6) != 0) {
        return 0;
    }
    int port = atoi(colon + 1);
    int sent = 0;
    for (int i = 0; i < count; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            uint8_t junk[512];
            size_t n = rnd() % sizeof(junk) + 1;
            fill(junk, n);
            if (i % 3 == 0 && n >= 8) {
                /* A plausible SP header followed by a lie about the length. */
                memcpy(junk, "\0SP\0\0\x30\0\0", 8);
            }
            if (send(fd, junk, n, MSG_NOSIGNAL) > 0) {
                sent++;
            }
        }
        close(fd);
    }
    return sent;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: tm_rpc_garbage URL COUNT [SEED]\n");
        return 2;
    }
    const char *url = argv[1];
    int count = atoi(argv[2]);
    rng = argc > 3 ? strtoull(argv[3], NULL, 10) : 0x9e3779b97f4a7c15ULL;
    if (rng == 0) {
        rng = 1;
    }
    nng_socket s;
    if (nng_req0_open(&s) != 0 || nng_dial(s, url, NULL, 0) != 0) {
        fprintf(stderr, "tm_rpc_garbage: cannot dial %s\n", url);
        return 1;
    }
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 300);
    nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 2000); /* never hang on a missing pipe */
    nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, 60000);
    nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 16u << 20);
    int replies = 0, timeouts = 0, errors_decoded = 0, oversized = 0, send_failed = 0;
    static uint8_t buf[9u << 20];
    for (int i = 0; i < count; i++) {
        size_t n = 0;
        int kind = i % 7;
        if (i % 2000 == 1999) {
            /* Oversized, over a raw SP/TCP connection: the server must drop
             * it. (nng 1.5's own REQ client can hang in close after the peer
             * drops it mid-write, so the tool frames this one by hand.) */
            n = (8u << 20) + rnd() % 1024;
            fill(buf, n);
            if (raw_sp_send(url, buf, n) == 1) {
                replies++; /* an answer to 8 MiB would be a bug */
            }
            oversized++;
            timeouts++;
            continue;
        } else if (kind == 0) {
            n = rnd() % 1024;
            fill(buf, n);
        } else if (kind == 3) {
            n = envelope(buf, sizeof(buf), 0);
            n = n > 1 ? rnd() % n : n; /* truncated */
        } else if (kind == 4) {
            n = envelope(buf, sizeof(buf), 0);
            if (n > 0) {
                buf[rnd() % n] ^= (uint8_t)(1u << (rnd() % 8)); /* one flipped bit */
            }
        } else {
            n = envelope(buf, sizeof(buf), kind % 3);
        }
        int sv = nng_send(s, buf, n, 0);
        if (sv != 0) {
            send_failed++;
            fprintf(stderr, "tm_rpc_garbage: send %d: %s\n", i, nng_strerror(sv));
            continue;
        }
        void *reply = NULL;
        size_t rlen = 0;
        int rv = nng_recv(s, &reply, &rlen, NNG_FLAG_ALLOC);
        if (rv == 0) {
            replies++;
            Tidemark__Reply *r = tidemark__reply__unpack(NULL, rlen, reply);
            if (r != NULL) {
                if (r->has_code && r->code != 0) {
                    errors_decoded++;
                }
                tidemark__reply__free_unpacked(r, NULL);
            }
            nng_free(reply, rlen);
        } else {
            timeouts++;
        }
    }
    int raw = raw_tcp_junk(url, 300);
    printf("sent=%d replies=%d error_replies=%d no_reply=%d oversized=%d send_failed=%d "
           "raw_tcp=%d\n",
           count, replies, errors_decoded, timeouts, oversized, send_failed, raw);
    nng_close(s);
    return 0;
}

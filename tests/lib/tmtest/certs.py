"""Generate a throwaway CA, a server certificate and client certificates with
the openssl CLI, for TLS tests. Nothing here is ever committed: every test run
makes its own keys in its own temp dir."""
import os
import subprocess


def _run(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(d):
    os.makedirs(d, exist_ok=True)
    p = {k: os.path.join(d, v) for k, v in {
        "ca": "ca.crt", "ca_key": "ca.key",
        "server_cert": "server.crt", "server_key": "server.key",
        "client_cert": "client.crt", "client_key": "client.key",
        "rogue_cert": "rogue.crt", "rogue_key": "rogue.key", "rogue_ca_key": "rogue-ca.key",
        "rogue_ca": "rogue-ca.crt"}.items()}
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run("req", "-x509", *ec, "-keyout", p["ca_key"], "-out", p["ca"], "-days", "2",
         "-subj", "/CN=tidemark-test-ca")
    _run("req", "-x509", *ec, "-keyout", p["rogue_ca_key"], "-out", p["rogue_ca"], "-days", "2",
         "-subj", "/CN=rogue-ca")

    def leaf(name, cn, ca, ca_key, ext):
        csr = os.path.join(d, name + ".csr")
        extf = os.path.join(d, name + ".ext")
        with open(extf, "w") as f:
            f.write(ext)
        _run("req", "-new", *ec, "-keyout", p[name + "_key"], "-out", csr, "-subj", f"/CN={cn}")
        _run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", p[name + "_cert"], "-days", "2", "-extfile", extf)

    leaf("server", "localhost", p["ca"], p["ca_key"],
         "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    leaf("client", "agent-1", p["ca"], p["ca_key"], "extendedKeyUsage=clientAuth\n")
    leaf("rogue", "rogue", p["rogue_ca"], p["rogue_ca_key"], "extendedKeyUsage=clientAuth\n")
    for k in ("ca_key", "server_key", "client_key", "rogue_key", "rogue_ca_key"):
        os.chmod(p[k], 0o600)
    return p

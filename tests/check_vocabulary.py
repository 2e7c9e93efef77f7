#!/usr/bin/env python3
"""check_vocabulary.py - engine vocabulary stays inside the engines.

Issue #13: an engine is one folder (agent/engines/<name>/) plus one
registration line; everything else in agent/, common/ and coordinator/
speaks engine-neutral terms (target kinds, backups, log ranges with a
chain and engine-opaque positions, a restorable window, RPO).

Scans the C sources and headers (*.c, *.h) of agent/, common/ and
coordinator/, except:
  - agent/engines/ (the engines' own rooms),
  - REGISTRATION: the files that list the engines by name.

A hit is a word of the engines' vocabulary, case-insensitive, as an
identifier or a word of a comment or string: each token of letters, digits
and '_' is split at '_' and a hit is a part equal to one of WORDS. So
"postgres", "PostgreSQL", "pg_wal", "tm_pg_restore", "WAL", "last_wal",
"wal_push", "LSN", "Redis", "AOF", "rdb", "SQLite" hit; "sqlite3_exec",
"sqlite3_stmt", "walk", "pgdata_x" do not ("sqlite3" and "walk" are other
words).

ALLOWED_PHRASES: the coordinator's catalog is stored in the SQLite library
(journal mode WAL), and tidemarkctl keeps two older option names for
existing scripts. Those words are allowed where they are, and nowhere else:
  - in CATALOG_FILES only, the library's API tokens: sqlite3* (not a word
    of the list anyway) and the library's constants SQLITE_[A-Z0-9_]+
    (case-sensitive: upper case, as the library spells them);
  - exact phrases, per file, each listed below (blanked out of the line
    before it is scanned, so the rest of the line still counts).

PENDING: files not yet made neutral; empty now, kept so a file can be
listed while it is being fixed, never as a way around the rule. agent/ has no entry. An entry whose file has no hit
any more, or no longer exists, is reported so it can be removed.

Prints file:line:word for each hit and exits 1 when there is any.
Usage: check_vocabulary.py [SOURCE_DIR]   (default: this file's ../)
"""
import os
import re
import sys

WORDS = {"postgres", "postgresql", "pg", "pgdata", "wal", "lsn", "redis", "aof", "rdb",
         "sqlite"}

ROOTS = ("agent", "common", "coordinator")
ENGINES_DIR = "agent/engines/"
REGISTRATION = {"agent/engine.c", "common/engine_kinds.c"}

# The catalog's own use of the SQLite library.
CATALOG_FILES = re.compile(r"^coordinator/catalog[a-z_]*\.[ch]$")
LIBRARY_TOKEN = re.compile(r"^SQLITE_[A-Z0-9_]+$")
ALLOWED_PHRASES = {
    "coordinator/catalog.c": [
        "PRAGMA journal_mode=WAL",
        "catalog on embedded SQLite",
        "every string reaches SQLite as a bound parameter",
        "Durability: WAL with synchronous=FULL",
        "add the next version. SQLite",
        "https://sqlite.org/",
        "code_from_sqlite",
        "rollback would replace SQLite's message",
        "Undo a failed transaction. SQLite has already rolled back",
        'strcmp(mode, "wal")',
        "journal_mode is %s, not wal;",
        "SQLite gives its -wal and -shm files",
        "checkpoints the WAL and removes it",
        'LIMIT -1 is SQLite for "no limit"',
    ],
    "coordinator/catalog.h": [
        "Embedded SQLite (WAL mode, synchronous=FULL) today; a server-backed catalog",
    ],
    "coordinator/catalog_internal.h": [
        "<sqlite message>",
    ],
    "coordinator/main.c": [
        "committed to the catalog (WAL,",
    ],
    "coordinator/admin.c": [
        '"sqlite:%s", c->conf->catalog_path',
    ],
    # Older option names kept so existing scripts keep working.
    "coordinator/ctl/backup.c": [
        "--pgdata is an older name of --dir",
        '{"pgdata", required_argument, NULL, \'d\'}',
        '{"lsn", required_argument, NULL, \'l\'}, /* older name of --position */',
    ],
    "common/config.h": [
        "catalog_path; /* SQLite file;",
    ],
}

# Files not yet neutral: to be emptied (never add an agent/ file here).
PENDING = {
}

TOKEN = re.compile(r"[A-Za-z0-9_]+")


def hits_in_line(line):
    for m in TOKEN.finditer(line):
        for part in m.group(0).split("_"):
            if part.lower() in WORDS:
                yield m.start(), m.group(0)
                break


def scan_file(rel, path):
    allow = ALLOWED_PHRASES.get(rel, [])
    library = CATALOG_FILES.match(rel) is not None
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for no, line in enumerate(f, 1):
            # Blank out the allowed phrases (same length: columns stay).
            for phrase in allow:
                line = line.replace(phrase, " " * len(phrase))
            for _, word in hits_in_line(line):
                if library and LIBRARY_TOKEN.match(word):
                    continue
                out.append((rel, no, word))
    return out


def main():
    src = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                          os.path.join(os.path.dirname(__file__), ".."))
    for rel in PENDING:
        if rel.startswith("agent/"):
            print(f"{rel}: agent/ files may not be PENDING", file=sys.stderr)
            return 2
    hits, pending_seen = [], {}
    for root in ROOTS:
        for d, dirs, files in os.walk(os.path.join(src, root)):
            dirs.sort()
            for fn in sorted(files):
                if not fn.endswith((".c", ".h")):
                    continue
                path = os.path.join(d, fn)
                rel = os.path.relpath(path, src).replace(os.sep, "/")
                if rel.startswith(ENGINES_DIR) or rel in REGISTRATION:
                    continue
                found = scan_file(rel, path)
                if rel in PENDING:
                    pending_seen[rel] = len(found)
                    continue
                hits.extend(found)
    for rel in sorted(PENDING):
        if rel not in pending_seen:
            print(f"note: PENDING entry {rel} no longer exists: remove it")
        elif pending_seen[rel] == 0:
            print(f"note: PENDING entry {rel} has no hit any more: remove it")
    for rel, no, word in hits:
        print(f"{rel}:{no}:{word}")
    if hits:
        print(f"{len(hits)} engine word(s) outside agent/engines/ (see tests/check_vocabulary.py)",
              file=sys.stderr)
        return 1
    print(f"ok: no engine vocabulary outside the engines "
          f"({len(PENDING)} file(s) still PENDING)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""`make soak`: mixed load on one settee (release) for SOAK_MINUTES (default 30).

Load: writers on 50 source databases; 200 continuous replications (150 between local
databases, 50 to a peer settee that flaps: killed and restarted on the same port and data
every few minutes); a share created and stopped with purge every minute; clients that open
changes feeds and drop them, and connections that send half a request and go away.

Every minute it prints RSS, open files, threads and the p99 latency of writes that minute. At
the end the writers stop and every target must hold exactly its source's documents, and growth
must have stopped after warm-up: RSS and open files at the last minute at most 1.1x those at
minute 10 (at the last minute's third for short runs). Exit 1 otherwise.
"""
import base64
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

MINUTES = int(os.environ.get("SOAK_MINUTES", "30"))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "settee")
ADMIN = "adm:soak-pw"
AUTH = "Basic " + base64.b64encode(ADMIN.encode()).decode()
SOURCES = 50


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start(data, port):
    p = subprocess.Popen(
        [BIN, "serve", "--bind", f"127.0.0.1:{port}", "--data", data, "--admin", ADMIN,
         "--max-jobs", "1000"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    p.stdout.readline()
    return p


def req(port, method, path, body=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                               headers={"Content-Type": "application/json", "Authorization": AUTH})
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def proc_figures(pid):
    st = open(f"/proc/{pid}/status").read()
    rss = int(next(l for l in st.splitlines() if l.startswith("VmRSS")).split()[1]) // 1024
    threads = int(next(l for l in st.splitlines() if l.startswith("Threads")).split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds, threads


def main():
    tmp = tempfile.mkdtemp(prefix="soak-")
    a_port, b_port = free_port(), free_port()
    a = start(os.path.join(tmp, "a"), a_port)
    b = start(os.path.join(tmp, "b"), b_port)
    stop = threading.Event()
    lat = []
    lat_lock = threading.Lock()
    for i in range(SOURCES):
        req(a_port, "PUT", f"/src{i}")
    for i in range(150):
        req(a_port, "PUT", f"/_replicator/local{i}",
            {"source": f"src{i % SOURCES}", "target": f"copy{i}", "create_target": True,
             "continuous": True})
    for i in range(50):
        req(a_port, "PUT", f"/_replicator/peer{i}",
            {"source": f"src{i % SOURCES}",
             "target": f"http://{ADMIN}@127.0.0.1:{b_port}/dst{i}", "create_target": True,
             "continuous": True})

    def writer(k):
        n = 0
        while not stop.is_set():
            db = f"src{random.randrange(SOURCES)}"
            docs = [{"_id": f"w{k}-{n}-{j}", "v": n, "pad": "p" * 200} for j in range(5)]
            t = time.monotonic()
            st, _ = req(a_port, "POST", f"/{db}/_bulk_docs", {"docs": docs})
            with lat_lock:
                lat.append(time.monotonic() - t)
            assert st == 201, st
            n += 1
            time.sleep(0.05)

    def feeds():
        while not stop.is_set():
            s = socket.create_connection(("127.0.0.1", a_port))
            s.sendall(f"GET /src{random.randrange(SOURCES)}/_changes?feed=continuous&since=now "
                      f"HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n\r\n".encode())
            time.sleep(random.random())
            s.close()
            half = socket.create_connection(("127.0.0.1", a_port))
            half.sendall(b"POST /src0/_bulk_docs HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"do")
            half.close()

    def shares():
        k = 0
        while not stop.is_set():
            req(a_port, "PUT", f"/col{k}")
            req(b_port, "PUT", f"/col{k}")
            req(a_port, "PUT", f"/col{k}/x", {"type": "shared"})
            req(a_port, "POST", "/_sharing",
                {"id": f"s{k}", "local": f"col{k}", "selector": {"type": "shared"},
                 "remote": f"http://{ADMIN}@127.0.0.1:{b_port}/col{k}", "mode": "read-write"})
            stop.wait(30)
            req(a_port, "DELETE", f"/_sharing/s{k}?purge=true")
            stop.wait(30)
            k += 1

    def flapping_peer():
        nonlocal b
        while not stop.wait(150):
            b.kill()
            b.wait()
            stop.wait(20)
            b = start(os.path.join(tmp, "b"), b_port)

    threads = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(4)]
    threads += [threading.Thread(target=f, daemon=True) for f in (feeds, shares, flapping_peer)]
    for t in threads:
        t.start()
    rows = []
    print("| minute | RSS, MiB | open files | threads | write p99, ms |")
    print("|---|---|---|---|---|")
    for minute in range(1, MINUTES + 1):
        time.sleep(60)
        with lat_lock:
            ls = sorted(lat)
            lat.clear()
        p99 = round(ls[int(len(ls) * 0.99) - 1] * 1000, 1) if ls else None
        rss, fds, nthreads = proc_figures(a.pid)
        rows.append((minute, rss, fds, nthreads, p99))
        print(f"| {minute} | {rss} | {fds} | {nthreads} | {p99} |", flush=True)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    if b.poll() is not None:
        b = start(os.path.join(tmp, "b"), b_port)

    # Convergence: every target holds its source's documents.
    def counts():
        src = {i: req(a_port, "GET", f"/src{i}")[1]["doc_count"] for i in range(SOURCES)}
        bad = [i for i in range(150)
               if req(a_port, "GET", f"/copy{i}")[1].get("doc_count") != src[i % SOURCES]]
        bad += [f"peer{i}" for i in range(50)
                if req(b_port, "GET", f"/dst{i}")[1].get("doc_count") != src[i % SOURCES]]
        return bad
    deadline = time.monotonic() + 300
    bad = counts()
    while bad and time.monotonic() < deadline:
        time.sleep(5)
        bad = counts()
    warm = rows[min(9, len(rows) // 3)]
    last = rows[-1]
    ok = not bad and last[1] <= 1.1 * warm[1] and last[2] <= 1.1 * warm[2]
    print(f"\nconverged: {'yes' if not bad else 'no: ' + str(bad[:10])}; "
          f"RSS {warm[1]} -> {last[1]} MiB, open files {warm[2]} -> {last[2]} "
          f"(minute {warm[0]} -> {last[0]}): {'ok' if ok else 'FAILED'}")
    a.kill()
    b.kill()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

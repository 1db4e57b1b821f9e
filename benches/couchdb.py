#!/usr/bin/env python3
"""settee side by side with Apache CouchDB 3.5 on the same machine, in the same run.

Given a CouchDB (admin URL) and two settee servers, measures:
  - `_bulk_docs` ingest of DOCS 1 KiB documents in batches of 1,000 (docs/s), each server;
  - reading them back with `_changes?include_docs=true` (docs/s), each server;
  - one-shot replication of them, all and with the sharing seed's selector (about 1 in 10):
    settee's replicator between the two settee servers, CouchDB's between two CouchDB
    databases, and each replicator pulling from the other product;
  - continuous write-to-target latency (p50/p99) of a job between two databases of the same
    product, for both products.
Prints one markdown table. Ratios compare settee with CouchDB measured in this same run.
"""
import argparse
import base64
import http.client
import json
import random
import statistics
import threading
import time
import urllib.parse


class Server:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.auth = None
        if u.username:
            cred = f"{urllib.parse.unquote(u.username)}:{urllib.parse.unquote(u.password or '')}"
            self.auth = "Basic " + base64.b64encode(cred.encode()).decode()
        self.base = f"http://{u.hostname}:{u.port}"
        self.cred_url = url.rstrip("/")
        self.conn = None

    def request(self, method, path, body=None, timeout=3600):
        headers = {"Accept": "application/json"}
        if self.auth:
            headers["Authorization"] = self.auth
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
            except (http.client.HTTPException, ConnectionError):
                self.conn = None
                if attempt:
                    raise

    def ok(self, method, path, body=None):
        status, v = self.request(method, path, body)
        assert 200 <= status < 300, f"{method} {path}: {status} {v}"
        return v

    def url(self, db):
        return f"{self.cred_url}/{db}"


def seed_docs(n):
    """Sharing-seed-shaped documents, about 1 KiB: collections, items of collections, notes."""
    rnd = random.Random(42)
    docs = []
    for i in range(n):
        kind = rnd.choices(["collection", "item", "note"], [1, 6, 3])[0]
        docs.append({
            "_id": f"doc{i:07d}",
            "type": kind,
            "title": f"title {i}",
            "data": {"collection_id": f"col{rnd.randrange(50)}", "n": i},
            "pad": "x" * 900,
        })
    return docs


# The sharing seed's selector, sharing a few collections' items and all collections.
SELECTOR = {"$or": [
    {"type": "collection"},
    {"type": "item", "data.collection_id": {"$in": ["col1", "col2", "col3", "col4", "col5"]}},
]}


def ingest(s, db, docs):
    s.request("DELETE", f"/{db}")
    s.ok("PUT", f"/{db}")
    t = time.perf_counter()
    for k in range(0, len(docs), 1000):
        s.ok("POST", f"/{db}/_bulk_docs", {"docs": docs[k:k + 1000]})
    return len(docs) / (time.perf_counter() - t)


def read_changes(s, db, n):
    t = time.perf_counter()
    v = s.ok("GET", f"/{db}/_changes?include_docs=true")
    assert len(v["results"]) == n, len(v["results"])
    return n / (time.perf_counter() - t)


def replicate(on, source, target, selector=None):
    """A one-shot `POST /_replicate` on `on`; returns (docs written, seconds)."""
    body = {"source": source, "target": target, "create_target": True}
    if selector:
        body["selector"] = selector
    t = time.perf_counter()
    v = on.ok("POST", "/_replicate", body)
    secs = time.perf_counter() - t
    written = v.get("docs_written", v.get("history", [{}])[0].get("docs_written"))
    return written, secs


def latency(source, src_db, target, tgt_db, on, writes=200, pause=0.01):
    """Continuous job `on` one server; time from each write's answer to its arrival."""
    for s, db in ((source, src_db), (target, tgt_db)):
        s.request("DELETE", f"/{db}")
        s.ok("PUT", f"/{db}")
    on.request("DELETE", "/_replicator/latency")
    status, doc = on.request("GET", "/_replicator/latency")
    on.ok("PUT", "/_replicator/latency", {
        "source": source.url(src_db), "target": target.url(tgt_db), "continuous": True})
    arrived = {}
    done = threading.Event()

    def follow():
        f = Server(target.cred_url)
        since = "0"
        while not done.is_set():
            _, v = f.request("GET", f"/{tgt_db}/_changes?feed=longpoll&timeout=1000&since={since}")
            now = time.perf_counter()
            for r in v["results"]:
                arrived.setdefault(r["id"], now)
            since = v["last_seq"]
            if isinstance(since, (int, float)):
                since = str(since)
            since = urllib.parse.quote(str(since))

    th = threading.Thread(target=follow, daemon=True)
    th.start()
    # The job is running once a first document crosses.
    source.ok("PUT", f"/{src_db}/warmup", {"x": 1})
    end = time.time() + 120
    while "warmup" not in arrived and time.time() < end:
        time.sleep(0.01)
    written = {}
    for i in range(writes):
        source.ok("PUT", f"/{src_db}/w{i:05d}", {"i": i})
        written[f"w{i:05d}"] = time.perf_counter()
        time.sleep(pause)
    end = time.time() + 120
    while len([k for k in written if k in arrived]) < writes and time.time() < end:
        time.sleep(0.01)
    done.set()
    lat = sorted((arrived[k] - t) * 1000 for k, t in written.items() if k in arrived)
    rev = on.ok("GET", "/_replicator/latency")["_rev"]
    on.request("DELETE", f"/_replicator/latency?rev={rev}")
    if len(lat) < writes:
        return None
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--couch", required=True, help="CouchDB URL with admin credentials")
    ap.add_argument("--settee-a", required=True)
    ap.add_argument("--settee-b", required=True)
    ap.add_argument("--docs", type=int, default=100_000)
    a = ap.parse_args()
    couch, sa, sb = Server(a.couch), Server(a.settee_a), Server(a.settee_b)
    docs = seed_docs(a.docs)
    n = len(docs)
    matching = sum(1 for d in docs if d["type"] == "collection"
                   or (d["type"] == "item" and d["data"]["collection_id"] in
                       ("col1", "col2", "col3", "col4", "col5")))
    rows = []

    def row(what, s_val, c_val, unit, better="higher"):
        if s_val is None or c_val is None:
            rows.append((what, s_val, c_val, unit, "n/a"))
            return
        ratio = s_val / c_val if better == "higher" else c_val / s_val
        rows.append((what, s_val, c_val, unit, f"{ratio:.1f}x"))

    row("`_bulk_docs` ingest, 1,000 per request", ingest(sa, "src", docs),
        ingest(couch, "src", docs), "docs/s")
    row("`_changes?include_docs=true`", read_changes(sa, "src", n),
        read_changes(couch, "src", n), "docs/s")

    def rate(w_s):
        w, s = w_s
        return n / s

    # Between two servers of the same product: settee's replicator on b pulling from a,
    # CouchDB's between two of its databases.
    s_all = replicate(sb, sa.url("src"), "all")
    c_all = replicate(couch, couch.url("src"), couch.url("all"))
    row(f"one-shot replication, {n:,} docs, same product", rate(s_all), rate(c_all), "docs/s")
    s_sel = replicate(sb, sa.url("src"), "sel", SELECTOR)
    c_sel = replicate(couch, couch.url("src"), couch.url("sel"), SELECTOR)
    assert s_sel[0] == matching and c_sel[0] == matching, (s_sel, c_sel, matching)
    row(f"one-shot, seed selector ({matching:,} of {n:,}), same product",
        rate(s_sel), rate(c_sel), "source docs/s")
    # Each replicator pulling from the other product.
    s_x = replicate(sb, couch.url("src"), "from-couch")
    c_x = replicate(couch, sa.url("src"), couch.url("from-settee"))
    row(f"one-shot, {n:,} docs, pulling from the other product", rate(s_x), rate(c_x),
        "docs/s")
    s_lat = latency(sa, "live", sb, "live", sb)
    c_lat = latency(couch, "live", couch, "live2", couch)
    row("continuous write-to-target p50", s_lat and s_lat[0], c_lat and c_lat[0], "ms",
        "lower")
    row("continuous write-to-target p99", s_lat and s_lat[1], c_lat and c_lat[1], "ms",
        "lower")

    print("| what | settee | CouchDB 3.5.0 | unit | settee vs CouchDB |")
    print("|---|---:|---:|---|---:|")
    for what, s_val, c_val, unit, ratio in rows:
        f = (lambda x: "n/a" if x is None else (f"{x:,.0f}" if x >= 100 else f"{x:.2f}"))
        print(f"| {what} | {f(s_val)} | {f(c_val)} | {unit} | {ratio} |")


if __name__ == "__main__":
    main()

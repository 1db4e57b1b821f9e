#!/usr/bin/env python3
"""Recovery after a peer outage: how long after a peer answers again a continuous replication
moves a new document. Three release settee servers per case: S (source), T (target) and R,
which runs the job S -> T (both remote, so either can go down without taking the job with it).
For each outage length and each side, the peer is stopped, kept down that long, started again
on the same port; once it answers `/_up`, a document is written to S and timed until it is on
T. Cases of one outage length run side by side (independent servers). Median of REPEAT.
Prints one markdown table."""
import json, os, socket, statistics, subprocess, sys, tempfile, threading, time, urllib.request

BIN = sys.argv[1]
OUTAGES = [int(x) for x in sys.argv[2].split(",") if x]
REPEAT = int(os.environ.get("REPEAT", "3"))

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def req(url, method="GET", body=None):
    data = None if body is None else json.dumps(body).encode()
    r = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(r, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None
    except Exception:
        return 0, None

class Server:
    def __init__(self):
        self.dir = tempfile.mkdtemp()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.start()
    def start(self):
        self.p = subprocess.Popen([BIN, "serve", "--bind", f"127.0.0.1:{self.port}", "--data", self.dir],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while req(self.url + "/_up")[0] != 200:
            time.sleep(0.02)
    def stop(self):
        self.p.kill(); self.p.wait()

def case(side, outage, out):
    s, t, r = Server(), Server(), Server()
    req(s.url + "/src", "PUT"); req(t.url + "/dst", "PUT"); req(r.url + "/_replicator", "PUT")
    req(r.url + "/_replicator/job", "PUT", {"source": s.url + "/src", "target": t.url + "/dst", "continuous": True})
    def arrived(doc_id, limit):
        end = time.time() + limit
        while time.time() < end:
            if req(f"{t.url}/dst/{doc_id}")[0] == 200:
                return True
            time.sleep(0.02)
        return False
    req(s.url + "/src/warm", "PUT", {})
    assert arrived("warm", 60), "the job never ran"
    times = []
    for i in range(REPEAT):
        peer = s if side == "source" else t
        peer.stop()
        time.sleep(outage)
        peer.start()
        t0 = time.time()
        req(f"{s.url}/src/after-{i}", "PUT", {"i": i})
        ok = arrived(f"after-{i}", 600)
        times.append(time.time() - t0 if ok else float("inf"))
    for x in (s, t, r):
        x.stop()
    out[(side, outage)] = times

results = {}
for outage in OUTAGES:
    threads = [threading.Thread(target=case, args=(side, outage, results)) for side in ("source", "target")]
    for th in threads: th.start()
    for th in threads: th.join()

print(f"| Recovery after an outage (continuous job on a third server; median of {REPEAT}) | seconds from the peer answering to the next document on the target | runs |")
print("|---|---|---|")
for outage in OUTAGES:
    for side in ("source", "target"):
        ts = results[(side, outage)]
        runs = ", ".join(f"{x:.2f}" for x in ts)
        print(f"| {side} down for {outage} s | {statistics.median(ts):.2f} | {runs} |")

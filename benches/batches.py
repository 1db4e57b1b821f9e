"""Writes the ingest benchmarks' request bodies: DIR/batch0.json .. batch19.json, each a
`_bulk_docs` body of 1000 new ~1 KiB docs (ids d00000..d19999). Used by server.sh and ab-fresh.sh."""
import json, sys

for b in range(20):
    docs = [{"_id": "d%05d" % (b * 1000 + i), "type": "item", "n": i, "pad": "x" * 940} for i in range(1000)]
    open(f"{sys.argv[1]}/batch{b}.json", "w").write(json.dumps({"docs": docs}))

#!/usr/bin/env python3
"""Runs Varde's ClickHouse migrations on a *current* ClickHouse engine (chdb, ClickHouse
embedded in a Python package from PyPI), inserts the same event twice and checks that the
read paths the store uses (FINAL, uniqExact) show it once. CI runs the migrations on Debian's
ClickHouse 18.16 through the Rust tests; this script covers the current releases.

    python3 deploy/dev/check-schema-current.py <varde binary>
"""
import subprocess
import sys

import chdb
from chdb import session

varde = sys.argv[1] if len(sys.argv) > 1 else "varde"
sql = subprocess.run([varde, "migrate", "--print-sql", "varde_check"], check=True,
                     capture_output=True, text=True).stdout
s = session.Session()
version = s.query("SELECT version()").bytes().decode().strip().strip('"')
s.query("CREATE DATABASE IF NOT EXISTS varde_check")
count = 0
for line in sql.splitlines():
    if line.startswith("--") or not line.strip():
        continue
    s.query(line.rstrip(";"))
    count += 1
row = ("('2024-05-01','0301','2024-05-01 10:00:00',5,'2024-05-01 10:00:01','0123456789abcdef',"
       "'k0301-a',1,0,'syslog','h',NULL,'m',['a'],['b'])")
for _ in range(2):
    s.query("INSERT INTO varde_check.events (event_date, tenant, event_time, event_time_us, receive_time, "
            "event_id, collector_id, batch_seq, batch_row, source_kind, host, severity, message, "
            "field_keys, field_values) VALUES " + row)
final = s.query("SELECT count() FROM varde_check.events FINAL").bytes().decode().strip()
uniq = s.query("SELECT uniqExact(event_id) FROM varde_check.events").bytes().decode().strip()
if final != "1" or uniq != "1":
    sys.exit(f"ClickHouse {version}: a replayed event is visible twice (FINAL {final}, uniqExact {uniq})")
# The cluster form of the schema (ON CLUSTER, replicated and distributed tables) needs ZooKeeper
# and a cluster, which an embedded engine has not: the tests run it on Debian's 18.16 cluster
# (deploy/dev/cluster.sh); here every statement must parse with the current release's parser.
cluster_sql = subprocess.run([varde, "migrate", "--print-sql", "varde_check", "--cluster", "varde"],
                             check=True, capture_output=True, text=True).stdout
parsed = 0
for line in cluster_sql.splitlines():
    if line.startswith("--") or not line.strip():
        continue
    statement = line.rstrip(";").replace("\\", "\\\\").replace("'", "\\'")
    s.query(f"SELECT formatQuery('{statement}')")
    parsed += 1
print(f"ClickHouse {version} (chdb {chdb.__version__}): {count} migration statements applied; "
      f"a replayed event is visible once; {parsed} cluster statements parse")

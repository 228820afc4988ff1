#!/usr/bin/env python3
"""Sigma -> SQL on a *current* ClickHouse engine (chdb, ClickHouse embedded in a Python package
from PyPI): the SQL that Varde generates for every Windows rule must select exactly the rows the
streaming engine matches, as tests/sigma_sql.rs checks on Debian's ClickHouse 18.16.

    python3 deploy/dev/check-sigma-sql-current.py <varde binary> <cases directory>

The cases directory is written by `sigma-sql-cases <dir>` (tests/kit/src/bin/sigma-sql-cases.rs):
events.jsonl (rows of the events table) and cases.jsonl (per rule: the SQL condition and the
event ids the engine matches). The schema comes from `varde migrate --print-sql`, as in
check-schema-current.py. Prints a summary; exits 1 on any mismatch, unsupported rule or query
error.
"""
import json
import subprocess
import sys
from pathlib import Path

import chdb
from chdb import session

DB = "varde_sigma_check"
RULES_PER_QUERY = 20

varde, cases_dir = sys.argv[1], Path(sys.argv[2])
migrations = subprocess.run([varde, "migrate", "--print-sql", DB], check=True,
                            capture_output=True, text=True).stdout
s = session.Session()
# Long rules (hash lists, many networks) need more than the default 256 KiB of query text, as
# varde-store allows them on 18.16.
for setting in ("max_query_size = 16777216", "max_ast_elements = 2000000",
                "max_expanded_ast_elements = 2000000"):
    s.query("SET " + setting)
version = s.query("SELECT version()").bytes().decode().strip().strip('"')
s.query(f"DROP DATABASE IF EXISTS {DB}")
s.query(f"CREATE DATABASE {DB}")
for line in migrations.splitlines():
    if line.startswith("--") or not line.strip():
        continue
    s.query(line.rstrip(";"))

# Events: through a staging table, since event_id (FixedString(16)) travels as hex.
s.query(f"""CREATE TABLE {DB}.staging (tenant String, event_time UInt32, event_time_us UInt32,
    receive_time UInt32, event_id String, collector_id String, batch_seq UInt64, batch_row UInt32,
    source_kind String, host String, severity Nullable(UInt8), message String,
    field_keys Array(String), field_values Array(String)) ENGINE = Memory""")
rows = (cases_dir / "events.jsonl").read_text(encoding="utf-8")
s.query(f"INSERT INTO {DB}.staging FORMAT JSONEachRow\n{rows}")
s.query(f"""INSERT INTO {DB}.events (event_date, tenant, event_time, event_time_us, receive_time,
    event_id, collector_id, batch_seq, batch_row, source_kind, host, severity, message,
    field_keys, field_values)
    SELECT toDate(toDateTime(event_time, 'UTC')), tenant, toDateTime(event_time, 'UTC'),
    event_time_us, toDateTime(receive_time, 'UTC'), toFixedString(unhex(event_id), 16),
    collector_id, batch_seq, batch_row, source_kind, host, severity, message, field_keys,
    field_values FROM {DB}.staging""")
stored = int(s.query(f"SELECT count() FROM {DB}.events FINAL", "TSV").bytes().decode())
expected_rows = rows.count("\n")
if stored != expected_rows:
    sys.exit(f"ClickHouse {version}: {stored} events stored of {expected_rows}")

cases = [json.loads(line) for line in (cases_dir / "cases.jsonl").read_text(encoding="utf-8").splitlines()]
unsupported = [c for c in cases if "sql" not in c]
runnable = [c for c in cases if "sql" in c]
mismatches, errors, fired = [], [], 0


def run(chunk):
    flags = ", ".join(f"toString(toUInt8({c['sql']}))" for c in chunk)
    out = s.query(f"SELECT concat(lower(hex(event_id)), ' ', {flags}) FROM {DB}.events FINAL",
                  "TSVRaw").bytes().decode()
    got = [set() for _ in chunk]
    for line in out.splitlines():
        event, bits = line.split(" ", 1)
        for i, bit in enumerate(bits):
            if bit == "1":
                got[i].add(event)
    return got


for start in range(0, len(runnable), RULES_PER_QUERY):
    chunk = runnable[start:start + RULES_PER_QUERY]
    try:
        results = list(zip(chunk, run(chunk)))
    except Exception:
        # Find the rule whose SQL fails, one at a time.
        results = []
        for c in chunk:
            try:
                results.append((c, run([c])[0]))
            except Exception as e:  # noqa: BLE001 - the server's message is the report
                errors.append(f"{c['title']} ({c['source']}): {str(e).strip().splitlines()[0][:300]}")
    for c, got in results:
        want = set(c["expected"])
        fired += bool(want)
        if got != want:
            extra, missing = sorted(got - want), sorted(want - got)
            mismatches.append(f"{c['title']} ({c['source']}): engine {len(want)} events, SQL {len(got)}"
                              f" (SQL only: {extra[:3]}, engine only: {missing[:3]})")

HAND_MADE = ("handmade.yml", "edgecases.yml")
corpus = sum(c["source"] not in HAND_MADE for c in cases)
if corpus == 0:
    print("SKIPPED the corpus part: ../shared/corpus/sigmahq/rules/windows not found; "
          "only the hand-made rules are compared")
print(f"ClickHouse {version} (chdb {chdb.__version__}): {len(runnable)} rules compared "
      f"({len(cases) - corpus} hand-made, {corpus} SigmaHQ) on {stored} "
      f"events ({fired} fired at least once), {len(unsupported)} unsupported, {len(errors)} query "
      f"errors, {len(mismatches)} mismatches")
for line in [f"unsupported: {c['title']} ({c['source']}): {c['unsupported']}" for c in unsupported] \
        + [f"error: {e}" for e in errors] + [f"mismatch: {m}" for m in mismatches]:
    print("  " + line)
if unsupported or errors or mismatches or fired == 0:
    sys.exit(1)

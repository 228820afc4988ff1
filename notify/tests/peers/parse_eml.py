#!/usr/bin/env python3
"""Parses the .eml files given as arguments with Python's own e-mail parser and prints one
JSON object per file: the decoded headers Varde's tests check and the text and HTML parts."""
import json
import sys
from email import policy
from email.parser import BytesParser

for path in sys.argv[1:]:
    with open(path, "rb") as f:
        m = BytesParser(policy=policy.default).parse(f)
    text = m.get_body(preferencelist=("plain",))
    html = m.get_body(preferencelist=("html",))
    print(json.dumps({
        "file": path,
        "subject": str(m["subject"]),
        "from": str(m["from"]),
        "to": str(m["to"]),
        "message_id": str(m["message-id"]),
        "headers": sorted(k.lower() for k in m.keys()),
        "text": text.get_content() if text else None,
        "html": html.get_content() if html else None,
    }))

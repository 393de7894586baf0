#!/usr/bin/env python3
"""Finds a window of an nsys-agent data dir by its name and prints what a validation
script needs from its manifest (windows/<id>/manifest.json):

    winfile.py DATA_DIR NAME state          ready | failed | ... (exit 1: no such window)
    winfile.py DATA_DIR NAME dir            the window's folder
    winfile.py DATA_DIR NAME error          the window's error, if any
    winfile.py DATA_DIR NAME KIND           its artifacts of that kind, one path a line
                                            (nsys-rep, sqlite, trace, merged-trace, summary, html, ...)
    winfile.py DATA_DIR NAME summary-json   the manifest's summary object

The newest window of that name wins. Only paths inside the window's folder are printed.
"""
import json
import os
import sys


def find(data_dir, name):
    """(folder, manifest) of the newest window called name, or (None, None)."""
    root = os.path.join(data_dir, "windows")
    best = (None, None)
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return best
    for e in entries:
        path = os.path.join(root, e, "manifest.json")
        try:
            with open(path) as f:
                m = json.load(f)
        except (OSError, ValueError):
            continue
        if not isinstance(m, dict) or m.get("name") != name:
            continue
        if best[1] is None or str(m.get("created_at", "")) >= str(best[1].get("created_at", "")):
            best = (os.path.join(root, e), m)
    return best


def artifacts(folder, manifest, kind):
    out = []
    for a in manifest.get("artifacts") or []:
        if not isinstance(a, dict) or a.get("kind") != kind or not isinstance(a.get("name"), str):
            continue
        p = os.path.realpath(os.path.join(folder, a["name"]))
        if p.startswith(os.path.realpath(folder) + os.sep):
            out.append(p)
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    data_dir, name, what = argv
    folder, m = find(data_dir, name)
    if m is None:
        print("no window named %r in %s" % (name, data_dir), file=sys.stderr)
        return 1
    if what == "state":
        print(m.get("state", ""))
    elif what == "dir":
        print(folder)
    elif what == "error":
        print(m.get("error", ""))
    elif what == "summary-json":
        print(json.dumps(m.get("summary")))
    elif what == "verdict":
        # "level: first finding" (the agent's checks may still be running: empty then)
        v = m.get("verdict") or {}
        f = (v.get("findings") or [{}])[0]
        print(("%s: %s" % (v.get("level", ""), f.get("message", f.get("id", "")))).strip(": "))
    else:
        for p in artifacts(folder, m, what):
            print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The results store: `DIR/results.json`, one record per finished run, never half-written.

Each finished run is appended by writing the whole file to a temporary file in the same directory
and `os.replace`-ing it over the old one, so an interrupted suite (Ctrl-C, a crash, a full disk)
leaves either the old file or the new one, never a torn one: it loses at most the run in progress.

A run is identified by `(task, method, seed, config_hash)`; `config_hash` is a short SHA-256 of
everything that decides the run's numbers (task parameters, method, training settings). A resumed
suite skips every run whose key is already stored, so rerunning the same command does no work
twice and rebuilds the same tables from the same records.
"""

from __future__ import annotations

import hashlib
import json
import os

from ..checkpoint import atomic_write_bytes

RESULTS_FILE = "results.json"


def config_hash(config: dict) -> str:
    """12 hex digits of SHA-256 over the canonical JSON of `config` (sorted keys)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_key(record):
    return (record["task"], record["method"], int(record["seed"]), record["config_hash"])


class ResultStore:
    """The records of `DIR/results.json`, kept in memory and rewritten atomically on append."""

    def __init__(self, directory):
        self.directory = directory
        self.path = os.path.join(directory, RESULTS_FILE)
        self.records = []
        self._lines = []   # each record's JSON text, so an append serialises one record only
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                try:
                    data = json.load(f)
                except json.JSONDecodeError as e:
                    raise ValueError(f"results file '{self.path}': not valid JSON ({e}); "
                                     "move it away to start afresh") from None
            if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
                raise ValueError(f"results file '{self.path}': expected an object with a "
                                 f"'runs' list, got {type(data).__name__}")
            for record in data["runs"]:
                self.records.append(record)
                self._lines.append(json.dumps(record, sort_keys=True))
        self._keys = {run_key(r) for r in self.records}

    def __len__(self):
        return len(self.records)

    def has(self, key):
        return key in self._keys

    def get(self, key):
        for r in self.records:
            if run_key(r) == key:
                return r
        return None

    def append(self, record):
        """Add one finished run and rewrite the file atomically."""
        key = run_key(record)
        if key in self._keys:
            raise ValueError(f"run {key} is already stored")
        line = json.dumps(record, sort_keys=True)
        text = '{"format_version": 1, "runs": [\n' + ",\n".join(self._lines + [line]) + "\n]}\n"
        atomic_write_bytes(self.path, text.encode("utf-8"))
        self.records.append(record)
        self._lines.append(line)
        self._keys.add(key)

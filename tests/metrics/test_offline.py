"""Nothing is downloaded at run time: every metric builds and scores in a fresh process whose
sockets to the network raise, with no proxy set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import json, socket, sys

def refuse(*args, **kwargs):
    raise OSError("network access blocked by the test")

real_connect = socket.socket.connect
def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        refuse()
    return real_connect(self, address)
socket.socket.connect = connect
socket.socket.connect_ex = lambda self, address: refuse() if self.family != socket.AF_UNIX else 0
socket.create_connection = refuse
socket.getaddrinfo = refuse

import urllib.request
try:
    urllib.request.urlopen("http://example.com", timeout=5)
    guard = "open"
except OSError:
    guard = "blocked"

import torch
from baton.metrics.item_metrics import build_metric
from tests.metrics.signals import voiced, with_noise

reference = voiced(1.0, 16_000)
estimate = with_noise(reference, 10.0)
scores = {name: build_metric(name)(estimate[None], reference[None], None, 16_000).item()
          for name in sys.argv[1:]}
print(json.dumps({"guard": guard, "scores": scores}))
'''


def run_offline(names: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run([sys.executable, "-c", SCRIPT, *names], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_fast_metrics_score_with_the_network_blocked() -> None:
    names = ["si_snr", "mel", "visqol", "visqol_speech", "pesq", "stoi", "speaker_sim"]
    got = run_offline(names)
    assert got["guard"] == "blocked"
    assert sorted(got["scores"]) == sorted(names)
    assert 1.0 < got["scores"]["visqol"] < 5.0 and 0.0 < got["scores"]["stoi"] < 1.0


@pytest.mark.slow  # DNSMOS: its ONNX sessions and a 9 s window, in a fresh process
def test_dnsmos_scores_with_the_network_blocked() -> None:
    got = run_offline(["dnsmos"])
    assert got["guard"] == "blocked" and 1.0 <= got["scores"]["dnsmos"] <= 5.0

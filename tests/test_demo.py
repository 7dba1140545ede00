"""The README's demo command, piped, as a newcomer runs it: the stand-in plus the console bot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run_demo(commands: str, *extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "POLARIS_"))}
    done = subprocess.run(
        [sys.executable, "demo.py", "--drain", "2", *extra],
        input=commands,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return ANSI.sub("", done.stdout).replace("\u200b", "")


def test_the_piped_demo_invites_through_the_stand_in_and_lists_the_new_user():
    out = run_demo("!polaris invite Someone@Example.com\n!polaris list someone\n!polaris status\n")

    assert "Inviting 1 address to Polaris…" in out
    assert "someone@example.com: invited" in out
    assert "1 Polaris user matching someone:" in out
    assert "someone@example.com  active  last sign-in never  ReadOnlyAdmin" in out
    assert "Polaris: reachable, login works" in out
    assert "Traceback" not in out and "Computer says" not in out


def test_the_demo_walks_a_request_through_approval():
    out = run_demo("!asuser\n!polaris request\n!asadmin\n!polaris pending\n")

    found = re.search(r"Request ([A-Z0-9]{6}) for luser@example.com is waiting", out)
    assert found, out[-2000:]
    assert f"{found.group(1)}  luser@example.com  asked by @luser" in out


def test_the_demo_removes_its_data_unless_kept():
    out = run_demo("!polaris status\n", "--keep")

    kept = re.search(r"are kept in (\S+)", out)
    assert kept, out[-1000:]
    folder = Path(kept.group(1))
    assert (folder / "errbot.log").exists()
    for path in sorted(folder.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    folder.rmdir()

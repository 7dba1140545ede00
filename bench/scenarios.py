"""The measurements: each drives the real bot against a sandbox in another process."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.baseline import BaselineRun, invite_one_by_one
from bench.harness import DOMAIN, INVITING, ROLE, ROOT, BenchBot, bot_env, ids, shown
from bench.remote import RemoteSandbox
from bench.startup import resident_kib
from polaris_sandbox import CLIENT_ID, CLIENT_SECRET

LIST_PAGE = 1000


@dataclass(frozen=True)
class Plan:
    """The sizes of one run."""

    mode: str
    invites: int  # N: invites in a burst, each from a different inviter
    latency: float  # L: seconds the sandbox adds to each RSC call
    list_users: int
    list_page_latency: float
    list_runs: int
    startup_runs: int
    others: int  # !polaris status and !help messages, each, sent during the second burst


QUICK = Plan("quick", 50, 0.25, 3_000, 0.02, 3, 2, 10)
FULL = Plan("full", 100, 1.0, 10_000, 0.02, 5, 5, 20)


@dataclass
class Burst:
    """What one burst of invites did."""

    acks: list[float] = field(default_factory=list)
    total: float = math.nan
    injection: float = math.nan
    others: dict[str, list[float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def invite_burst(
    bot: BenchBot,
    senders: Sequence[str],
    tag: str,
    expected: float,
    others: Sequence[tuple[str, str]] = (),
) -> Burst:
    """Every sender invites one new address at once; optional other commands mid-burst.

    ``others`` are (sender, text) pairs sent one by one, evenly over the middle half of
    the ``expected`` duration, from their own thread while the invites run.
    """
    burst = Burst()
    items = [
        (sender, f"!polaris invite bench-{tag}-{i:04d}@{DOMAIN}")
        for i, sender in enumerate(senders)
    ]
    other_sent: dict[str, float] = {}

    def send_others(start: float) -> None:
        span = max(1, len(others) - 1)
        for k, (sender, text) in enumerate(others):
            delay = start + expected * (0.25 + 0.5 * k / span) - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            other_sent[sender] = bot.inject(sender, text)

    start = time.perf_counter()
    side = threading.Thread(target=send_others, args=(start,), name="bench-others")
    if others:
        side.start()
    delivered = bot.inject_burst(items)
    burst.injection = max(delivered.values()) - min(delivered.values())
    wanted = {sender: 2 for sender in senders}
    wanted.update({sender: 1 for sender, _ in others})
    complete = bot.replies.wait(wanted, timeout=3 * expected + 60)
    if others:
        side.join()
    if not complete:
        burst.problems.append("not every message was answered in time")

    finished: list[float] = []
    for i, (sender, text) in enumerate(items):
        replies = bot.replies.of(sender)
        email = text.rsplit(" ", 1)[1]
        if replies and INVITING.match(replies[0].text):
            burst.acks.append(replies[0].at - delivered[sender])
        else:
            burst.problems.append(f"invite {i}: first reply {_first(replies)!r}")
        if len(replies) >= 2 and shown(replies[1].text) == f"{email}: invited":
            finished.append(replies[1].at)
        else:
            burst.problems.append(f"invite {i}: outcome {_second(replies)!r}")
    if finished and len(finished) == len(items):
        burst.total = max(finished) - min(delivered.values())

    for sender, text in others:
        command = text.split()[0] if text.startswith("!help") else " ".join(text.split()[:2])
        replies = bot.replies.of(sender)
        if replies and sender in other_sent:
            burst.others.setdefault(command, []).append(replies[0].at - other_sent[sender])
        else:
            burst.problems.append(f"{command} from {sender} got no reply")
    return burst


def _first(replies: Sequence[object]) -> object:
    return getattr(replies[0], "text", None) if replies else None


def _second(replies: Sequence[object]) -> object:
    return getattr(replies[1], "text", None) if len(replies) > 1 else None


@dataclass
class Invites:
    """Figures 1 to 4 and 7: both bursts, the logins and the baseline."""

    cold: Burst
    warm: Burst
    concurrency: int
    logins: int
    baseline: BaselineRun
    bot_start_seconds: float


def invites(plan: Plan, data_dir: Path) -> Invites:
    """Burst on a just-started bot with latency on every RSC call, then the comparisons."""
    senders = ids("INV", plan.invites)
    expected = math.ceil(plan.invites / 8) * plan.latency
    with RemoteSandbox(users=300, latency=plan.latency) as sandbox:
        bot = BenchBot(bot_env(sandbox.url, senders), data_dir / "invites")
        try:
            concurrency = int(bot.plugin.settings.concurrency)
            expected = math.ceil(plan.invites / concurrency) * plan.latency
            # Figures 1, 2 and 4: the bot has just started; the sandbox has seen nothing else.
            cold = invite_burst(bot, senders, "cold", expected)
            logins = sandbox.logins

            # Figure 3: RSC slow only for createUser, so other commands measure the bot.
            bot.replies.forget()
            sandbox.set_latency(0.0)
            sandbox.set_fault("graphql:createUser", "latency", seconds=plan.latency)
            others: list[tuple[str, str]] = []
            for k, sender in enumerate(ids("OTH", 2 * plan.others)):
                others.append((sender, "!polaris status" if k % 2 == 0 else "!help"))
            warm = invite_burst(bot, senders, "warm", expected, others)
            sandbox.clear_faults()
        finally:
            bot.stop()

        # Figure 7: the original tool's way, same sandbox, same latency on every call.
        sandbox.set_latency(plan.latency)
        emails = [f"bench-base-{i:04d}@{DOMAIN}" for i in range(plan.invites)]
        role_id = sandbox.role_ids()[ROLE]
        baseline = invite_one_by_one(sandbox.url, CLIENT_ID, CLIENT_SECRET, role_id, emails)
    return Invites(cold, warm, concurrency, logins, baseline, bot.start_seconds)


@dataclass
class Listing:
    """Figure 5: !polaris list over a large account."""

    users: int
    pages: int
    walls: list[float] = field(default_factory=list)
    rsc_seconds: list[float] = field(default_factory=list)
    traced_peak: int | None = None
    traced_wall: float = math.nan
    rss_peak_growth: int | None = None
    problems: list[str] = field(default_factory=list)


LIST_HEADER = re.compile(r"^(\d+) Polaris users:")


def listing(plan: Plan, data_dir: Path) -> Listing:
    """Time ``!polaris list`` over ``plan.list_users`` users, then measure its memory."""
    lister = "U0LISTER"
    with RemoteSandbox(users=plan.list_users, latency=plan.list_page_latency) as sandbox:
        users = sandbox.user_count()
        result = Listing(users, math.ceil(users / LIST_PAGE))
        bot = BenchBot(bot_env(sandbox.url, [lister]), data_dir / "list")
        try:
            for _ in range(plan.list_runs):
                sandbox.reset_log()
                before = resident_kib()
                peak_reset = _reset_peak_rss()
                wall, reply = bot.ask(lister, "!polaris list", timeout=120)
                high = resident_kib("VmHWM")
                _check_list(reply.text, result)
                result.walls.append(wall)
                result.rsc_seconds.append(_rsc_seconds(sandbox))
                if peak_reset and before is not None and high is not None:
                    growth = (high - before) * 1024
                    result.rss_peak_growth = max(result.rss_peak_growth or 0, growth)

            # tracemalloc slows every allocation, so its run is not one of the timed ones.
            tracemalloc.start()
            try:
                base, _ = tracemalloc.get_traced_memory()
                tracemalloc.reset_peak()
                wall, reply = bot.ask(lister, "!polaris list", timeout=120)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            _check_list(reply.text, result)
            result.traced_peak = peak - base
            result.traced_wall = wall
        finally:
            bot.stop()
    return result


def _check_list(text: str, result: Listing) -> None:
    header = LIST_HEADER.match(text)
    if header is None or int(header.group(1)) < result.users - 1:
        result.problems.append(f"unexpected list reply: {text[:120]!r}")


def _rsc_seconds(sandbox: RemoteSandbox) -> float:
    """Time the sandbox spent on the GraphQL requests it logged (latency included)."""
    return sum(
        (r.finished or r.started) - r.started for r in sandbox.requests if r.path == "/api/graphql"
    )


def _reset_peak_rss() -> bool:
    """Reset this process's peak resident size (Linux: writing 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as control:
            control.write("5")
    except OSError:
        return False
    return True


@dataclass
class Startup:
    """Figure 6: fresh processes from launch to the first answered message."""

    launch_to_ready: list[float] = field(default_factory=list)
    in_process: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def startup(plan: Plan) -> Startup:
    """Start the bot ``plan.startup_runs`` times, each in a new Python process."""
    result = Startup()
    with RemoteSandbox(users=300) as sandbox:
        env = json.dumps(bot_env(sandbox.url, ids("INV", plan.invites)))
        for _ in range(plan.startup_runs):
            launched = time.monotonic()
            child = subprocess.run(
                [sys.executable, "-m", "bench.startup"],
                input=env,
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=120,
                check=False,
            )
            line = child.stdout.strip().splitlines()[-1:] if child.stdout.strip() else []
            if child.returncode != 0 or not line:
                result.problems.append(f"start-up run failed: {child.stderr.strip()[-300:]}")
                continue
            report = json.loads(line[0])
            result.launch_to_ready.append(report["ready"] - launched)
            result.in_process.append(report["start_seconds"])
            if report.get("rss_kib"):
                result.rss_kib.append(int(report["rss_kib"]))
    return result


def scratch() -> tempfile.TemporaryDirectory[str]:
    """A directory for the bots' data, removed afterwards."""
    return tempfile.TemporaryDirectory(prefix="polaris-bench-")

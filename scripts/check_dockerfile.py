"""Check the Dockerfile and .dockerignore against the image rules; exit 1 on a violation.

There is no Docker engine in CI, so the rules the image must keep are read off the
text: a pinned slim Python 3.11 base, a non-root USER, no secret in ENV or ARG, a
HEALTHCHECK, exec-form ENTRYPOINT/CMD, dependencies from the pinned requirements
file with --no-cache-dir, the data directory as a volume, and a .dockerignore that
keeps secrets and local state out of the build context.

    python scripts/check_dockerfile.py [--dockerfile PATH] [--dockerignore PATH]
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BASE_IMAGE = re.compile(
    r"^(?:docker\.io/)?(?:library/)?python:3\.11\.\d+-slim(?:-[a-z]+)?(?:@sha256:[0-9a-f]{64})?$"
)
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE|CREDENTIAL", re.I)
# Slack tokens, RSC client secrets in a service-account file, JWTs.
SECRET_VALUE = re.compile(r"xox[abposr]-|xapp-|eyJ[A-Za-z0-9_-]{10,}|client\|")
ROOT_USERS = {"root", "0"}
REQUIREMENTS = "requirements.txt"
DATA_DIR = "/data"
MUST_IGNORE = (".venv", "data", ".git", "*.json", ".env")


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction with its continuation lines joined."""

    line: int
    keyword: str
    arguments: str


def parse(text: str) -> list[Instruction]:
    """Split Dockerfile text into instructions, dropping comments and blank lines."""
    instructions: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped by Docker too
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        pending += stripped
        keyword, _, rest = pending.partition(" ")
        instructions.append(Instruction(start, keyword.upper(), rest.strip()))
        pending = ""
    if pending:
        keyword, _, rest = pending.partition(" ")
        instructions.append(Instruction(start, keyword.upper(), rest.strip()))
    return instructions


def _exec_form(arguments: str) -> list[str] | None:
    """The JSON array of an exec-form instruction, or None for shell form."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return None
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return value
    return None


def _assignments(arguments: str) -> list[tuple[str, str]]:
    """The name/value pairs of an ENV or ARG instruction (both syntaxes)."""
    try:
        words = shlex.split(arguments)
    except ValueError:
        words = arguments.split()
    if words and "=" not in words[0]:
        # Legacy form: ENV NAME value with spaces
        return [(words[0], " ".join(words[1:]))]
    return [(name, value) for name, _, value in (word.partition("=") for word in words)]


def check_dockerfile(text: str) -> list[str]:
    """Every rule the Dockerfile breaks, one sentence each, with its line number."""
    problems: list[str] = []
    instructions = parse(text)
    by_keyword: dict[str, list[Instruction]] = {}
    for instruction in instructions:
        by_keyword.setdefault(instruction.keyword, []).append(instruction)

    froms = by_keyword.get("FROM", [])
    if not froms:
        problems.append("no FROM instruction")
    for item in froms[-1:]:
        image = item.arguments.split()[0] if item.arguments else ""
        if not BASE_IMAGE.match(image):
            problems.append(
                f"line {item.line}: base image '{image}' is not a pinned slim Python 3.11 tag "
                "(python:3.11.N-slim[-distro], optionally @sha256:...)"
            )

    users = by_keyword.get("USER", [])
    if not users:
        problems.append("no USER instruction: the bot would run as root")
    elif users[-1].arguments.split(":")[0].strip() in ROOT_USERS:
        problems.append(f"line {users[-1].line}: the last USER is root")

    for item in by_keyword.get("ENV", []) + by_keyword.get("ARG", []):
        for name, value in _assignments(item.arguments):
            if SECRET_NAME.search(name):
                problems.append(
                    f"line {item.line}: {item.keyword} {name} looks like a secret; "
                    "pass secrets at run time, never in the image"
                )
            elif SECRET_VALUE.search(value):
                problems.append(f"line {item.line}: {item.keyword} {name} holds a token-like value")

    checks = by_keyword.get("HEALTHCHECK", [])
    if not checks:
        problems.append("no HEALTHCHECK instruction")
    elif checks[-1].arguments.strip().upper() == "NONE":
        problems.append(f"line {checks[-1].line}: HEALTHCHECK NONE turns the health check off")
    else:
        _, _, command = checks[-1].arguments.partition("CMD")
        if _exec_form(command.strip()) is None:
            problems.append(f"line {checks[-1].line}: HEALTHCHECK CMD is not in exec form")

    starts = by_keyword.get("ENTRYPOINT", []) + by_keyword.get("CMD", [])
    if not starts:
        problems.append("no ENTRYPOINT or CMD instruction")
    for item in starts:
        if _exec_form(item.arguments) is None:
            problems.append(
                f"line {item.line}: {item.keyword} is in shell form; use the exec form "
                '(["python", ...]) so the bot receives SIGTERM itself'
            )

    problems.extend(_check_installs(by_keyword.get("RUN", []), by_keyword))

    volumes = by_keyword.get("VOLUME", [])
    declared: set[str] = set()
    for item in volumes:
        declared.update(_exec_form(item.arguments) or item.arguments.split())
    if DATA_DIR not in declared:
        problems.append(f"no VOLUME {DATA_DIR}: the bot's storage would live in the container")
    data_dirs = [
        value
        for item in by_keyword.get("ENV", [])
        for name, value in _assignments(item.arguments)
        if name == "BOT_DATA_DIR"
    ]
    if data_dirs[-1:] != [DATA_DIR]:
        problems.append(f"ENV BOT_DATA_DIR is not {DATA_DIR}")
    return problems


def _check_installs(runs: list[Instruction], by_keyword: dict[str, list[Instruction]]) -> list[str]:
    """pip installs use no cache, and packages come only from the pinned requirements."""
    problems: list[str] = []
    from_requirements = False
    for item in runs:
        for command in re.split(r"&&|;|\|\|", item.arguments):
            words = command.split()
            if "pip" not in " ".join(words[:4]) or "install" not in words:
                continue
            if "--no-cache-dir" not in words:
                problems.append(f"line {item.line}: pip install without --no-cache-dir")
            after = words[words.index("install") + 1 :]
            options_with_value = {"-r", "--requirement", "-c", "--constraint"}
            skip = False
            for word in after:
                if skip:
                    skip = False
                    from_requirements = from_requirements or Path(word).name == REQUIREMENTS
                    continue
                if word in options_with_value:
                    skip = True
                elif not word.startswith("-") and "==" not in word:
                    problems.append(f"line {item.line}: pip installs '{word}' without a pin")
    if not from_requirements:
        problems.append(
            f"no RUN pip install -r {REQUIREMENTS}: dependencies must be the pinned set"
        )
    copied = " ".join(item.arguments for item in by_keyword.get("COPY", []))
    if REQUIREMENTS not in copied:
        problems.append(f"{REQUIREMENTS} is never copied into the image")
    return problems


def check_dockerignore(text: str) -> list[str]:
    """Entries the .dockerignore must have so secrets and local state stay out of the build."""
    entries = {line.strip().lstrip("/").rstrip("/") for line in text.splitlines()}
    entries.discard("")
    return [
        f".dockerignore does not exclude {entry}"
        for entry in MUST_IGNORE
        if entry not in entries and f"**/{entry}" not in entries
    ]


def main(argv: list[str] | None = None) -> int:
    """Check the files and print each violation; the exit status is 1 when there is any."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dockerfile", type=Path, default=ROOT / "Dockerfile")
    parser.add_argument("--dockerignore", type=Path, default=ROOT / ".dockerignore")
    options = parser.parse_args(argv)

    problems: list[str] = []
    files = (
        (options.dockerfile, check_dockerfile),
        (options.dockerignore, check_dockerignore),
    )
    for path, check in files:
        if path.is_file():
            problems.extend(f"{path.name}: {p}" for p in check(path.read_text()))
        else:
            problems.append(f"{path} is missing")

    for problem in problems:
        print(problem)
    if not problems:
        print("Dockerfile and .dockerignore keep every rule.")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Errbot commands for inviting people to Rubrik Security Cloud (Polaris).

The plugin is thin: it checks who is asking and where, then hands the work to the
``polarisbot`` library. Slow Polaris calls for invites run on the library's own
bounded queue, so Errbot's thread pool is free again as soon as the
acknowledgement is sent.
"""

from __future__ import annotations

import io
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from errbot import BotPlugin, botcmd, webhook

from polarisbot import render
from polarisbot.access import entries_that_cannot_match_on_slack, restricted, rule_for
from polarisbot.addresses import Candidate, parse_addresses
from polarisbot.approvals import Approvals, Request, RequestError
from polarisbot.audit import AuditTrail
from polarisbot.errors import PolarisBotError
from polarisbot.invites import Batch, InviteQueue, refusal, start_invites
from polarisbot.limits import HourlyLimit, LimitReached
from polarisbot.messages import SeenMessages, arguments, message_key, requester_email, sender_id
from polarisbot.outcomes import Kind, Outcome
from polarisbot.policy import batch_too_large, domain_allowed
from polarisbot.rsc import RscClient
from polarisbot.safe_text import code, neutralize
from polarisbot.settings import INVITE, RSC, Settings, load_settings
from polarisbot.slash import SlashCommand
from polarisbot.storage import Storage

USAGE = """\
!polaris invite <email> [<email> ...]   invite people to Polaris (inviters)
!polaris request                        ask for a Polaris account for yourself
!polaris pending                        requests waiting for approval (inviters)
!polaris approve <id>                   approve a request: its requester is invited (inviters)
!polaris deny <id> [reason]             refuse a request; its requester is told why (inviters)
!polaris audit [email|count]            who asked, who granted what (inviters, direct message)
!polaris status                         is Polaris reachable, and what the bot has done
!polaris list [text]                    who has access (inviters, in a direct message)
!polaris roles                          the roles in the Polaris account (inviters)"""

SUBCOMMANDS = {line.split()[1] for line in USAGE.splitlines()}

# Backends that take files: long user lists go there as a file as well.
FILE_BACKENDS = ("slackv3", "slack", "test")
LIST_FILE = "polaris-users.txt"

NO_PROFILE_EMAIL = (
    "I can't see an email address in your chat profile, so I can't request an account for "
    "you. On Slack, the bot needs the users:read.email scope: ask your Slack admin to add it "
    "to the app and reinstall it."
)

NO_ACCESS_CONTROL = (
    "This command is switched off because access control is not in force: the bot's "
    "operator must load the ACLs plugin and set POLARIS_INVITERS."
)

# Expired requests are found by this poller, and also whenever requests are read.
EXPIRY_POLL_SECONDS = 60.0
MAX_REASON_CHARS = 300
SLACK_MEMBER = re.compile(r"^[UW][A-Z0-9]{2,}$")
SLACK_CHANNEL = re.compile(r"^[CG][A-Z0-9]{2,}$")

Respond = Callable[[str], None]


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _where(msg: Any) -> str:
    """Where a message was asked, for the log: a channel id or ``direct``."""
    room = getattr(msg.frm, "room", None) if msg.is_group else None
    return str(getattr(room, "id", None) or room) if room is not None else "direct"


class Polaris(SlashCommand, BotPlugin):
    """Invite people to Rubrik Security Cloud (Polaris) and see who has access."""

    def activate(self) -> None:
        super().activate()
        source = getattr(self.bot_config, "POLARIS_SETTINGS", None) or os.environ
        self.settings: Settings = load_settings(source)
        self.client: RscClient | None = None
        self.queue: InviteQueue | None = None
        if self.settings.credentials is not None:
            self.client = RscClient(
                self.settings.credentials,
                connect_timeout=self.settings.connect_timeout,
                read_timeout=self.settings.read_timeout,
                retry_budget=self.settings.retry_budget,
            )
            self.queue = InviteQueue(
                self.client,
                self.settings.roles,
                self.settings.concurrency,
                on_outcome=self._log_outcome,
            )
        self.seen = SeenMessages()
        self.started = datetime.now(UTC)
        # Set once the bot has logged in to RSC and looked up the role ids (or failed to):
        # doing it now spares the first invites two round trips.
        self.ready = threading.Event()
        threading.Thread(target=self._warm_up, name="polaris-warm-up", daemon=True).start()

        # One lock around every access to the plugin's storage: Errbot runs commands on
        # several threads, and neither its storage nor a shelf locks. The audit trail and
        # the limits read storage once, here, and write in the background (storage.py).
        self.storage_lock = threading.RLock()
        self.storage = Storage(self, self.storage_lock)
        ttl = timedelta(hours=self.settings.request_ttl_hours)
        self.approvals = Approvals(self, self.storage_lock, ttl)
        self.audit = AuditTrail(self.storage)
        self.limits = HourlyLimit(self.storage, self.settings.max_invites_per_hour)
        self.start_poller(EXPIRY_POLL_SECONDS, self._expire_requests)
        self._resume_approved_invites()
        for problem in self.settings.problems:
            self.log.warning("setting problem: %s", problem.sentence)
        self._warn_about_slack_acl_entries()
        self._start_webserver()

    def _warm_up(self) -> None:
        try:
            if self.queue is not None and not self.settings.problems_for(RSC, INVITE):
                self.queue.role_ids()
        except PolarisBotError as error:
            self.log.warning("could not prepare invites at start-up: %s", error)
        except Exception:
            self.log.exception("could not prepare invites at start-up")
        finally:
            self.ready.set()

    def deactivate(self) -> None:
        if self.queue is not None:
            self.queue.close()
        if self.client is not None:
            self.client.close()
        # After the invite queue: finished invites add audit entries. Before Errbot
        # closes the storage: the waiting writes need it.
        self.storage.close()
        super().deactivate()

    # --- web ----------------------------------------------------------------------

    @webhook("/health", methods=("GET",))
    def health(self, _: Any) -> dict[str, Any]:
        """Answers while the bot is connected to chat (Errbot stops the web server otherwise)."""
        return {"status": "ok", "backend": self._bot.mode, "since": self.started.isoformat()}

    # --- commands -----------------------------------------------------------------

    @botcmd
    def polaris(self, msg: Any, args: str) -> str:
        """Invite people to Polaris and see who has access; !polaris for usage."""
        word = args.split()[0] if args.split() else ""
        if word.lower() in SUBCOMMANDS:
            return f"Polaris commands are lower-case: try !polaris {word.lower()}."
        if word:
            return f"I don't know the Polaris command '{neutralize(word[:40])}'.\n{USAGE}"
        return USAGE

    @botcmd
    def polaris_invite(self, msg: Any, args: str) -> Iterator[str]:
        """Invite people to Polaris: !polaris invite <email> [<email> ...]"""
        if not self.seen.first_time(message_key(msg)):
            self.log.info("ignored a redelivered message from %s", sender_id(msg))
            return
        text = arguments(msg, args, "invite")
        yield self.invite_for(sender_id(msg), text, where=_where(msg), respond=self._replier(msg))

    @botcmd
    def polaris_request(self, msg: Any, args: str) -> Iterator[str]:
        """Ask for a Polaris account for yourself, with your chat profile's email."""
        if not self.seen.first_time(message_key(msg)):
            self.log.info("ignored a redelivered message from %s", sender_id(msg))
            return
        # The address comes from the profile, never from the message text.
        email = requester_email(msg) or self._console_email(msg)
        yield self.request_for(sender_id(msg), email, where=_where(msg), respond=self._replier(msg))

    @botcmd
    def polaris_pending(self, msg: Any, args: str) -> str:
        """Requests for an account waiting for an inviter's approval."""
        if not self._access_control_in_force("polaris_pending"):
            return NO_ACCESS_CONTROL
        self._expire_requests()
        waiting = self.approvals.pending()
        if not waiting:
            return "No requests are waiting for approval."
        lines = [f"{render.plural(len(waiting), 'request')} waiting for approval:"]
        lines += [self._request_line(request) for request in waiting]
        lines.append(
            "Approve with !polaris approve <id>, or refuse with !polaris deny <id> [reason]."
        )
        return "\n".join(lines)

    @botcmd
    def polaris_approve(self, msg: Any, args: str) -> Iterator[str]:
        """Approve a request, which invites its requester: !polaris approve <id>"""
        if not self.seen.first_time(message_key(msg)):
            self.log.info("ignored a redelivered message from %s", sender_id(msg))
            return
        text = arguments(msg, args, "approve")
        yield self.approve_for(sender_id(msg), text, where=_where(msg), respond=self._replier(msg))

    @botcmd
    def polaris_deny(self, msg: Any, args: str) -> Iterator[str]:
        """Refuse a request and tell its requester why: !polaris deny <id> [reason]"""
        if not self.seen.first_time(message_key(msg)):
            self.log.info("ignored a redelivered message from %s", sender_id(msg))
            return
        yield self.deny_for(sender_id(msg), arguments(msg, args, "deny"), where=_where(msg))

    @botcmd
    def polaris_audit(self, msg: Any, args: str) -> str:
        """Who asked, who granted what, and when: !polaris audit [email|count]"""
        if not self._access_control_in_force("polaris_audit"):
            return NO_ACCESS_CONTROL
        if not msg.is_direct:
            return "The audit trail holds personal data: ask me in a direct message."
        text = arguments(msg, args, "audit").strip()
        count, email = 20, None
        if text.isdigit():
            count = int(text)
        elif text:
            found = [c.email for c in parse_addresses(text) if c.email]
            email = found[0] if found else text.lower()
        entries = self.audit.newest(count, email)
        about = f" for {neutralize(email)}" if email else ""
        if not entries:
            return f"The audit trail has no entries{about}."
        header = f"Newest {render.plural(len(entries), 'audit entry', 'audit entries')}{about}:"
        return "\n".join([header, *(entry.chat_line() for entry in entries)])

    # --- the entry points shared by chat and the slash command --------------------------

    def invite_for(self, inviter: str, text: str, *, where: str, respond: Respond) -> str:
        """Invite the addresses in ``text`` on behalf of ``inviter`` (already authorised).

        Returns what to say at once: the acknowledgement, or the whole answer when no
        address needs Polaris. The outcome of running invites goes to ``respond``.
        """
        refusal = self._refuse("polaris_invite", INVITE)
        if refusal:
            return refusal
        candidates = parse_addresses(text)
        if not candidates:
            return "Name at least one address: !polaris invite <email> [<email> ...]"
        return self._start(inviter, candidates, "invite", where, respond)

    def request_for(self, requester: str, email: str, *, where: str, respond: Respond) -> str:
        """Self-service: ask for an account for ``requester``'s own profile ``email``.

        With POLARIS_APPROVAL=auto the invite starts at once; otherwise the request waits
        for an inviter, who is notified. Returns what to say at once; the outcome of a
        running invite goes to ``respond``, a decision to the requester's direct messages.
        """
        refusal = self._refuse(None, INVITE)
        if refusal:
            return refusal
        if not email:
            return NO_PROFILE_EMAIL
        candidates = parse_addresses(email)[:1]
        if not candidates:
            return NO_PROFILE_EMAIL
        if self.settings.approval == "auto":
            return self._start(requester, candidates, "request", where, respond)

        refused = self._refused_before_polaris(candidates[0])
        if refused is not None:
            self.audit.record(
                "request",
                who=requester,
                email=refused.email,
                outcome=refused.kind.name,
                where=where,
            )
            return render.outcome_line(refused.email, refused)
        assert candidates[0].email is not None
        self._expire_requests()
        request, opened = self.approvals.open(requester, candidates[0].email, where)
        outcome = "PENDING" if opened else "ALREADY_PENDING"
        self.audit.record(
            "request",
            who=requester,
            email=request.email,
            outcome=outcome,
            where=where,
            request=request.id,
            roles=",".join(self.settings.roles),
        )
        if not opened:
            return (
                f"You already have request {request.id} waiting, made {_when(request.created)}: "
                "an inviter will answer it, and I'll send you a direct message when they do."
            )
        answer = (
            f"Request {request.id} for {request.email} is waiting for an inviter's approval. "
            "I'll send you a direct message when they decide; if nobody does, it expires at "
            f"{_when(request.expires)}."
        )
        if not self._notify_approvers(request):
            answer += (
                f" I could not tell any inviter: ask one to run !polaris approve {request.id}."
            )
        return answer

    def approve_for(self, approver: str, text: str, *, where: str, respond: Respond) -> str:
        """Approve the request named in ``text`` and invite its requester.

        Returns what to say at once; the invite's outcome goes to ``respond`` and to the
        requester's direct messages.
        """
        refusal = self._refuse("polaris_approve", INVITE)
        if refusal:
            return refusal
        words = text.split()
        if not words:
            return "Name the request: !polaris approve <id> (!polaris pending lists them)."
        self._expire_requests()

        def reserve(request: Request) -> None:
            allowance = self.limits.reserve(approver, 1)
            if not allowance.granted:
                raise LimitReached(allowance)

        try:
            request = self.approvals.decide(words[0], approver, approve=True, admit=reserve)
        except (RequestError, LimitReached) as error:
            return self._refused_decision("approve", approver, words[0], error, where)
        candidates = parse_addresses(request.email)[:1]
        answer = self._start(
            request.requester,
            candidates,
            "approve",
            where,
            respond,
            approver=approver,
            request=request,
        )
        return f"Approved request {request.id} from {self._person(request.requester)}. {answer}"

    def deny_for(self, denier: str, text: str, *, where: str) -> str:
        """Refuse the request named in ``text``; the requester is told, with the reason."""
        if not self._access_control_in_force("polaris_deny"):
            return NO_ACCESS_CONTROL
        words = text.split(maxsplit=1)
        if not words:
            return "Name the request: !polaris deny <id> [reason] (!polaris pending lists them)."
        reason = words[1].strip()[:MAX_REASON_CHARS] if len(words) > 1 else ""
        self._expire_requests()
        try:
            request = self.approvals.decide(words[0], denier, approve=False, reason=reason)
        except RequestError as error:
            return self._refused_decision("deny", denier, words[0], error, where)
        self.audit.record(
            "deny",
            who=request.requester,
            email=request.email,
            outcome="DENIED",
            approver=denier,
            where=where,
            request=request.id,
            reason=reason,
        )
        why = f": {neutralize(reason)}" if reason else " (no reason given)"
        told = self._tell(
            request.requester,
            f"Your request {request.id} for a Polaris account ({request.email}) was denied by "
            f"{self._person(denier)}{why}",
        )
        return f"Denied request {request.id} from {self._person(request.requester)}. " + (
            "I told them." if told else "I could not send them a message: please tell them."
        )

    def _start(
        self,
        who: str,
        candidates: Sequence[Candidate],
        action: str,
        where: str,
        respond: Respond,
        *,
        approver: str = "",
        request: Request | None = None,
    ) -> str:
        """Check the batch size and the hourly limit, queue the invites, audit each outcome.

        ``who`` is the inviter or requester. With ``request`` (an approval), the limit was
        already reserved for ``approver`` and the requester is told the outcome.
        """
        assert self.queue is not None
        too_many = batch_too_large(sum(1 for c in candidates if c.email), self.settings.max_batch)
        if too_many:
            self.audit.record(action, who=who, email="", outcome="TOO_MANY", where=where)
            return too_many

        limited = {} if request is not None else self._reserve(who, candidates)
        batch = self._plan(candidates, limited)
        started = time.monotonic()

        def finish(results: list[tuple[str, Outcome]]) -> None:
            elapsed = round((time.monotonic() - started) * 1000)
            for _, outcome in results:
                self._audit_outcome(
                    action, who, outcome, limited, where, elapsed, approver, request
                )
            if pending:
                respond(render.outcome_lines(results))
            if request is not None:
                self._tell_requester_result(request, results)

        pending = len(batch.pending)
        if not pending:
            finish(batch.results())
            return render.outcome_lines(batch.results())
        batch.when_done(finish)
        return f"Inviting {render.plural(pending, 'address', 'addresses')} to Polaris…"

    @botcmd
    def polaris_status(self, msg: Any, args: str) -> str:
        """Is Polaris reachable, does login work, and what the bot has done."""
        lines = []
        if self.client is None:
            lines.append("Polaris: not configured.")
        else:
            lines.append(self.client.status().summary())
        lines.append(self._activity())
        lines.append(self._requests_summary())
        problems = [p.sentence for p in self.settings.problems]
        if self.queue is not None and self.queue.roles_problem:
            problems.append(self.queue.roles_problem)
        lines.append("Settings: " + (" ".join(problems) if problems else "all good."))
        return "\n".join(lines)

    @botcmd
    def polaris_list(self, msg: Any, args: str) -> str:
        """Who has a Polaris account: !polaris list [part of an email]"""
        refusal = self._refuse("polaris_list", RSC)
        if refusal:
            return refusal
        if not msg.is_direct:
            return "User lists hold personal data: ask me in a direct message."
        assert self.client is not None
        text = arguments(msg, args, "list").strip()
        limit = self.settings.list_limit
        as_file = self._bot.mode in FILE_BACKENDS
        lines: list[str] = []  # shown in chat
        rows: list[str] = []  # the whole list, for the file
        total = 0
        try:
            for user in self.client.iter_users(text or None):
                total += 1
                if len(lines) < limit:
                    lines.append(render.user_line(user))
                if as_file:
                    rows.append(render.user_row(user))
        except Exception as error:
            return self._failure("list users", error)
        if total == 0:
            return "No Polaris users match." if text else "Polaris has no users."
        header = f"{render.plural(total, 'Polaris user')}" + (
            f" matching {code(text)}:" if text else ":"
        )
        body = "\n".join(lines)
        if total <= limit:
            return f"{header}\n{body}"
        if as_file:
            data = "\n".join(rows).encode() + b"\n"
            self.send_stream_request(
                msg.frm, io.BytesIO(data), name=LIST_FILE, size=len(data), stream_type="text/plain"
            )
            more = f"the full list is in the file {LIST_FILE} I'm sending you."
        else:
            more = "narrow it with !polaris list <text>."
        return f"{header}\n{body}\n… and {total - limit} more not shown here; {more}"

    @botcmd
    def polaris_roles(self, msg: Any, args: str) -> str:
        """The roles in the Polaris account, and which ones invited people get."""
        refusal = self._refuse("polaris_roles", RSC)
        if refusal:
            return refusal
        assert self.client is not None
        try:
            roles = self.client.roles()
        except Exception as error:
            return self._failure("list roles", error)
        configured = {name.lower() for name in self.settings.roles}
        lines = [
            f"{role.name}{' (given to invited people)' if role.name.lower() in configured else ''}"
            for role in roles
        ]
        text = "Polaris roles:\n" + "\n".join(lines)
        if self.queue is not None and self.queue.roles_problem:
            text += f"\nInvites are refused until this is fixed: {self.queue.roles_problem}"
        return text

    # --- requests, limits and the audit trail ------------------------------------------

    def _expire_requests(self) -> None:
        """Expire requests past their time and tell each requester (once: expire() is atomic)."""
        for request in self.approvals.expire():
            self.audit.record(
                "expire",
                who=request.requester,
                email=request.email,
                outcome="EXPIRED",
                where=request.where,
                request=request.id,
            )
            hours = f"{self.settings.request_ttl_hours:g}"
            self._tell(
                request.requester,
                f"Your request {request.id} for a Polaris account ({request.email}) expired: "
                f"no inviter answered within {hours} hours. Ask again with !polaris request "
                "if you still need it.",
            )

    def _resume_approved_invites(self) -> None:
        """Send again the invites of requests approved just before the bot stopped.

        Sending again is safe: an account that was created meanwhile comes back as
        "already has an account". The limit was counted at approval.
        """
        if self.queue is None:
            return
        for request in self.approvals.unfinished():
            self.log.info("resuming the invite of approved request %s", request.id)
            self._start(
                request.requester,
                parse_addresses(request.email)[:1],
                "approve",
                request.where,
                lambda _: None,
                approver=request.decider,
                request=request,
            )

    def _notify_approvers(self, request: Request) -> int:
        """Tell the approvers' channel, or else each inviter, about a new request."""
        text = (
            f"Polaris request {request.id}: {self._person(request.requester)} asks for an "
            f"account for {request.email}. Approve with !polaris approve {request.id}, or refuse "
            f"with !polaris deny {request.id} [reason]. It expires at {_when(request.expires)}."
        )
        if self.settings.approvers_channel:
            return int(self._tell(self.settings.approvers_channel, text))
        rule = rule_for(
            f"{self.name}:polaris_approve",
            self.bot_config.ACCESS_CONTROLS,
            self.bot_config.ACCESS_CONTROLS_DEFAULT,
        )
        allowed = rule.get("allowusers") or ()
        inviters = [allowed] if isinstance(allowed, str) else list(allowed)
        # Glob entries name nobody in particular; the requester cannot approve anyway.
        inviters = [u for u in inviters if not set("*?[") & set(u) and u != request.requester]
        return sum(self._tell(inviter, text) for inviter in inviters)

    def _tell(self, target: str, text: str) -> bool:
        """A direct message to a person (or a post to a channel) by id; False if it failed."""
        try:
            self.send(self.build_identifier(self._address(target)), text)
        except Exception:  # a lost notification must not undo the decision behind it
            self.log.warning("could not send a message to %s", target, exc_info=True)
            return False
        return True

    def _console_email(self, msg: Any) -> str:
        """In Errbot's console, which has no profiles, the email POLARIS_CONSOLE_EMAILS names."""
        if self._bot.mode != "text":
            return ""
        person = str(getattr(msg.frm, "person", "") or "").lstrip("@")
        return self.settings.console_emails.get(person, "")

    def _address(self, target: str) -> str:
        """An id in the form the backend's build_identifier accepts.

        SlackV3 refuses bare ids: members are written <@U…> and channels <#C…>.
        """
        if self._bot.mode in ("slack", "slackv3"):
            if SLACK_MEMBER.match(target):
                return f"<@{target}>"
            if SLACK_CHANNEL.match(target):
                return f"<#{target}>"
        return target

    def _person(self, member_id: str) -> str:
        """A person in a message: a mention on Slack, the id elsewhere."""
        if self._bot.mode in ("slack", "slackv3") and SLACK_MEMBER.match(member_id):
            return f"<@{member_id}>"
        return member_id

    def _request_line(self, request: Request) -> str:
        return (
            f"{request.id}  {request.email}  asked by {self._person(request.requester)} "
            f"at {_when(request.created)}, expires {_when(request.expires)}"
        )

    def _refused_decision(
        self, action: str, decider: str, request_id: str, error: Exception, where: str
    ) -> str:
        """Audit and explain an approval or denial that could not be made."""
        request = getattr(error, "request", None) or self.approvals.get(request_id)
        if isinstance(error, LimitReached):
            outcome = "LIMITED"
            answer = (
                f"I can't approve {request_id.upper()} now: {error.allowance.sentence()}. "
                "It stays pending."
            )
        else:
            outcome = re.sub(r"(?<!^)(?=[A-Z])", "_", type(error).__name__).upper()
            answer = str(error)
        self.audit.record(
            action,
            who=request.requester if request else "",
            email=request.email if request else "",
            outcome=outcome,
            approver=decider,
            where=where,
            request=request.id if request else neutralize(request_id, 20),
        )
        return answer

    def _refused_before_polaris(self, candidate: Candidate) -> Outcome | None:
        """The outcome for an address that policy refuses, or None when it may be invited."""
        if candidate.email is None:
            return refusal(candidate)
        if not domain_allowed(candidate.email, self.settings.allowed_domains):
            allowed = ", ".join(self.settings.allowed_domains)
            detail = f"this bot invites only {allowed} addresses"
            return Outcome(candidate.email, Kind.DOMAIN, detail)
        return None

    def _reserve(self, who: str, candidates: Sequence[Candidate]) -> dict[str, str]:
        """Reserve places in ``who``'s hour; the addresses that got none, with the reason."""
        sendable = [c.email for c in candidates if c.email and not self._refused_before_polaris(c)]
        unique = list(dict.fromkeys(email for email in sendable if email))
        if not unique:
            return {}
        allowance = self.limits.reserve(who, len(unique))
        return {email: f"not sent: {allowance.sentence()}" for email in unique[allowance.granted :]}

    def _plan(self, candidates: Sequence[Candidate], limited: dict[str, str]) -> Batch:
        """Queue the addresses that may go, keeping the order the person typed."""
        assert self.queue is not None
        batch = Batch()
        for candidate in candidates:
            if candidate.email in limited:
                outcome = Outcome(candidate.email, Kind.REFUSED, limited[candidate.email])
                batch.planned.append((candidate.email, outcome))
            else:
                planned = start_invites([candidate], self.settings.allowed_domains, self.queue)
                batch.planned.extend(planned.planned)
        return batch

    def _audit_outcome(
        self,
        action: str,
        who: str,
        outcome: Outcome,
        limited: dict[str, str],
        where: str,
        elapsed_ms: int,
        approver: str,
        request: Request | None,
    ) -> None:
        sent = outcome.kind not in (Kind.INVALID, Kind.DOMAIN, Kind.REFUSED)
        self.audit.record(
            action,
            who=who,
            email=outcome.email[:254],
            outcome="LIMITED" if outcome.email in limited else outcome.kind.name,
            approver=approver,
            roles=",".join(self.settings.roles),
            where=where,
            request=request.id if request else "",
            reason=(outcome.detail or "") if outcome.kind in (Kind.ERROR, Kind.INVALID) else "",
            duration_ms=elapsed_ms if sent else None,
        )

    def _tell_requester_result(self, request: Request, results: list[tuple[str, Outcome]]) -> None:
        """Remember an approved request's outcome and send it to the requester."""
        kinds = ",".join(outcome.kind.name for _, outcome in results) or "NOTHING"
        self.approvals.record_result(request.id, kinds)
        self._tell(
            request.requester,
            f"Your request {request.id} for a Polaris account was approved by "
            f"{self._person(request.decider)}.\n{render.outcome_lines(results)}",
        )

    # --- helpers ------------------------------------------------------------------

    def _replier(self, msg: Any) -> Respond:
        """Send later answers where ``msg`` was asked: its thread, channel or DM."""
        return lambda text: self._bot.send_simple_reply(msg, text)

    def _refuse(self, command: str | None, part: str) -> str | None:
        """A sentence saying why this command cannot run now, or None when it can."""
        if command is not None and not self._access_control_in_force(command):
            return NO_ACCESS_CONTROL
        problems = self.settings.problems_for(RSC, part)
        if problems:
            return "I can't do that until the bot's settings are fixed: " + " ".join(problems)
        return None

    def _access_control_in_force(self, command: str) -> bool:
        """Privileged commands run only while Errbot's ACLs limit them to a list of users."""
        active = {name.lower() for name in self._bot.plugin_manager.get_all_active_plugin_names()}
        if "acls" not in active:
            return False
        return restricted(
            f"{self.name}:{command}",
            self.bot_config.ACCESS_CONTROLS,
            self.bot_config.ACCESS_CONTROLS_DEFAULT,
        )

    def _failure(self, action: str, error: Exception) -> str:
        """One plain sentence for a failed read; anything unexpected goes to the log only."""
        if isinstance(error, PolarisBotError):
            self.log.info("could not %s: %s", action, error)
            return f"I couldn't {action}: {error}"
        self.log.exception("could not %s", action)
        return f"I couldn't {action}: the bot hit an unexpected problem; its log has the details."

    def _activity(self) -> str:
        since = self.started.strftime("%Y-%m-%d %H:%M UTC")
        if self.queue is None:
            return f"Since {since}: no invites (not configured)."
        text = f"Since {since}: {render.counts(self.queue.stats())}."
        last = self.queue.last_error()
        if last is not None:
            text += f"\nLast error: {last.at.strftime('%H:%M:%S UTC')}, {last.email}: {last.reason}"
        return text

    def _requests_summary(self) -> str:
        if self.settings.approval == "auto":
            text = "Requests: invited at once (POLARIS_APPROVAL=auto)"
        else:
            waiting = len(self.approvals.pending())
            text = f"Requests: need an inviter's approval, {waiting} waiting"
        return f"{text}; at most {self.settings.max_invites_per_hour} invites an hour per person."

    def _log_outcome(self, outcome: Outcome, seconds: float) -> None:
        self.log.debug("invite %s: %s (%.0f ms)", outcome.email, outcome.kind.name, seconds * 1000)

    def _start_webserver(self) -> None:
        """Configure and start Errbot's web server when the environment asks for it.

        Errbot keeps the Webserver plugin's settings in its storage and starts it only
        once configured from chat; the environment is the one source of truth here.
        """
        if self.settings.webserver_port is None:
            return
        host, port = self.settings.webserver_host, self.settings.webserver_port
        wanted = {
            "HOST": host,
            "PORT": port,
            "SSL": {"enabled": False, "host": host, "port": 0, "certificate": "", "key": ""},
        }
        manager = self._bot.plugin_manager
        active = set(manager.get_all_active_plugin_names())
        if manager.get_plugin_configuration("Webserver") != wanted:
            manager.set_plugin_configuration("Webserver", wanted)
            if "Webserver" in active:
                manager.deactivate_plugin("Webserver")
                active.discard("Webserver")
        if "Webserver" not in active:
            manager.activate_plugin("Webserver")
        self.log.info("web server on %s:%s", host, port)

    def _warn_about_slack_acl_entries(self) -> None:
        if self._bot.mode not in ("slack", "slackv3"):
            return
        for warning in entries_that_cannot_match_on_slack(
            self.bot_config.ACCESS_CONTROLS, self.bot_config.BOT_ADMINS
        ):
            self.log.warning(warning)

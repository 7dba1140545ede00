"""The invite desk: invites, requests, approvals, denials, limits and the audit trail.

Chat commands and the /polaris slash command both come here, so the workflow lives in
one place and knows nothing of Errbot. What happens in chat comes in as small
callables: ``tell`` sends a direct message to a member id (or a post to a channel id),
``person`` writes a member id the way the chat shows people, ``guarded`` says whether
access control is in force for a command, and ``approvers`` names the people the
approve command is limited to.

The desk also answers the reads (status, the user list, the roles), so chat and the
slash command say the same things. Every method returns what to say at once. Outcomes
that arrive later (invites still running) go to the ``respond`` callable of the
command that started them, and decisions to the requester's direct messages.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from polarisbot import render
from polarisbot.addresses import Candidate, parse_addresses
from polarisbot.approvals import Approvals, Request, RequestError
from polarisbot.audit import AuditTrail
from polarisbot.errors import PolarisBotError
from polarisbot.invites import Batch, InviteQueue, refused_by_policy, start_invites
from polarisbot.limits import HourlyLimit, LimitReached
from polarisbot.outcomes import Kind, Outcome
from polarisbot.policy import batch_too_large
from polarisbot.rsc import RscClient
from polarisbot.safe_text import code, neutralize
from polarisbot.settings import INVITE, RSC, Settings

log = logging.getLogger("polarisbot.desk")

NO_PROFILE_EMAIL = (
    "I can't see an email address in your chat profile, so I can't request an account for "
    "you. On Slack, the bot needs the users:read.email scope: ask your Slack admin to add it "
    "to the app and reinstall it."
)

NO_ACCESS_CONTROL = (
    "This command is switched off because access control is not in force: the bot's "
    "operator must load the ACLs plugin and set POLARIS_INVITERS."
)

MAX_REASON_CHARS = 300
LIST_FILE = "polaris-users.txt"

Respond = Callable[[str], None]


@dataclass(frozen=True)
class Listing:
    """The answer to !polaris list, and the whole list as a file when it is too long."""

    text: str
    file: bytes | None = None


def _ignore(_: str) -> None:
    """Where outcomes go when nobody is waiting for them (invites resumed at start-up)."""


class Desk:
    """The workflow behind every command that invites, requests or decides."""

    def __init__(
        self,
        settings: Settings,
        client: RscClient | None,
        queue: InviteQueue | None,
        approvals: Approvals,
        audit: AuditTrail,
        limits: HourlyLimit,
        *,
        tell: Callable[[str, str], bool],
        person: Callable[[str], str] = str,
        guarded: Callable[[str], bool],
        approvers: Callable[[], Sequence[str]],
        started: datetime | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.queue = queue
        self.approvals = approvals
        self.audit = audit
        self.limits = limits
        self.tell = tell
        self.person = person
        self.guarded = guarded
        self.approvers = approvers
        self.started = started or datetime.now(UTC)

    # --- what the commands call -------------------------------------------------------

    def invite_for(self, inviter: str, text: str, *, where: str, respond: Respond) -> str:
        """Invite the addresses in ``text`` on behalf of ``inviter`` (already authorised).

        Returns the acknowledgement, or the whole answer when no address needs Polaris.
        """
        refusal = self.blocked("polaris_invite", INVITE)
        if refusal:
            return refusal
        candidates = parse_addresses(text)
        if not candidates:
            return "Name at least one address: !polaris invite <email> [<email> ...]"
        return self._start(inviter, candidates, "invite", where, respond)

    def request_for(self, requester: str, email: str, *, where: str, respond: Respond) -> str:
        """Self-service: ask for an account for ``requester``'s own profile ``email``.

        With POLARIS_APPROVAL=auto the invite starts at once; otherwise the request waits
        for an inviter, who is notified.
        """
        refusal = self.blocked(None, INVITE)
        if refusal:
            return refusal
        candidates = parse_addresses(email)[:1] if email else []
        if not candidates:
            return NO_PROFILE_EMAIL
        if self.settings.approval == "auto":
            return self._start(requester, candidates, "request", where, respond)

        refused = refused_by_policy(candidates[0], self.settings.allowed_domains)
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
        self.expire_requests()
        request, opened = self.approvals.open(requester, candidates[0].email, where)
        self.audit.record(
            "request",
            who=requester,
            email=request.email,
            outcome="PENDING" if opened else "ALREADY_PENDING",
            where=where,
            request=request.id,
            roles=",".join(self.settings.roles),
        )
        if not opened:
            return (
                f"You already have request {request.id} waiting, made "
                f"{render.when(request.created)}: an inviter will answer it, and I'll send "
                "you a direct message when they do."
            )
        answer = (
            f"Request {request.id} for {request.email} is waiting for an inviter's approval. "
            "I'll send you a direct message when they decide; if nobody does, it expires at "
            f"{render.when(request.expires)}."
        )
        if not self._notify_approvers(request):
            answer += (
                f" I could not tell any inviter: ask one to run !polaris approve {request.id}."
            )
        return answer

    def approve_for(self, approver: str, text: str, *, where: str, respond: Respond) -> str:
        """Approve the request named in ``text`` and invite its requester.

        The invite's outcome goes to ``respond`` and to the requester's direct messages.
        """
        refusal = self.blocked("polaris_approve", INVITE)
        if refusal:
            return refusal
        words = text.split()
        if not words:
            return "Name the request: !polaris approve <id> (!polaris pending lists them)."
        self.expire_requests()

        def reserve(request: Request) -> None:
            allowance = self.limits.reserve(approver, 1)
            if not allowance.granted:
                raise LimitReached(allowance)

        try:
            request = self.approvals.decide(words[0], approver, approve=True, admit=reserve)
        except (RequestError, LimitReached) as error:
            return self._refused_decision("approve", approver, words[0], error, where)
        answer = self._start(
            request.requester,
            parse_addresses(request.email)[:1],
            "approve",
            where,
            respond,
            approver=approver,
            request=request,
        )
        return f"Approved request {request.id} from {self.person(request.requester)}. {answer}"

    def deny_for(self, denier: str, text: str, *, where: str) -> str:
        """Refuse the request named in ``text``; the requester is told, with the reason."""
        if not self.guarded("polaris_deny"):
            return NO_ACCESS_CONTROL
        words = text.split(maxsplit=1)
        if not words:
            return "Name the request: !polaris deny <id> [reason] (!polaris pending lists them)."
        reason = words[1].strip()[:MAX_REASON_CHARS] if len(words) > 1 else ""
        self.expire_requests()
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
        told = self.tell(
            request.requester,
            f"Your request {request.id} for a Polaris account ({request.email}) was denied by "
            f"{self.person(denier)}{why}",
        )
        return f"Denied request {request.id} from {self.person(request.requester)}. " + (
            "I told them." if told else "I could not send them a message: please tell them."
        )

    def pending_report(self) -> str:
        """The requests waiting for an inviter, oldest first, and how to answer them."""
        if not self.guarded("polaris_pending"):
            return NO_ACCESS_CONTROL
        self.expire_requests()
        waiting = self.approvals.pending()
        if not waiting:
            return "No requests are waiting for approval."
        lines = [f"{render.plural(len(waiting), 'request')} waiting for approval:"]
        lines += [
            f"{r.id}  {r.email}  asked by {self.person(r.requester)} "
            f"at {render.when(r.created)}, expires {render.when(r.expires)}"
            for r in waiting
        ]
        lines.append(
            "Approve with !polaris approve <id>, or refuse with !polaris deny <id> [reason]."
        )
        return "\n".join(lines)

    def audit_report(self, text: str, *, private: bool) -> str:
        """The newest audit entries, ``text`` being a count or an address to filter by.

        ``private`` says whether the answer reaches only the person who asked.
        """
        if not self.guarded("polaris_audit"):
            return NO_ACCESS_CONTROL
        if not private:
            return "The audit trail holds personal data: ask me in a direct message."
        text = text.strip()
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

    def status_report(self) -> str:
        """Is Polaris reachable, what the bot has done, how requests work, what to fix."""
        polaris = self.client.status().summary() if self.client else "Polaris: not configured."
        problems = [p.sentence for p in self.settings.problems]
        if self.queue is not None and self.queue.roles_problem:
            problems.append(self.queue.roles_problem)
        settings = "Settings: " + (" ".join(problems) if problems else "all good.")
        return "\n".join([polaris, self._activity(), self._requests_summary(), settings])

    def users_report(self, text: str, *, private: bool, with_file: bool) -> Listing:
        """Who has a Polaris account, ``text`` being part of an address to filter by.

        Beyond POLARIS_LIST_LIMIT users the chat shows the first ones; ``with_file``
        (for chats that take files) also gives the whole list as a file.
        """
        refusal = self.blocked("polaris_list", RSC)
        if refusal:
            return Listing(refusal)
        if not private:
            return Listing("User lists hold personal data: ask me in a direct message.")
        assert self.client is not None
        text = text.strip()
        limit = self.settings.list_limit
        lines: list[str] = []  # shown in chat
        rows: list[str] = []  # the whole list, for the file
        total = 0
        try:
            for user in self.client.iter_users(text or None):
                total += 1
                if len(lines) < limit:
                    lines.append(render.user_line(user))
                if with_file:
                    rows.append(render.user_row(user))
        except Exception as error:
            return Listing(_failure("list users", error))
        if total == 0:
            return Listing("No Polaris users match." if text else "Polaris has no users.")
        header = f"{render.plural(total, 'Polaris user')}" + (
            f" matching {code(text)}:" if text else ":"
        )
        body = "\n".join(lines)
        if total <= limit:
            return Listing(f"{header}\n{body}")
        if not with_file:
            more = "narrow it with !polaris list <text>."
            return Listing(f"{header}\n{body}\n… and {total - limit} more not shown here; {more}")
        more = f"the full list is in the file {LIST_FILE} I'm sending you."
        return Listing(
            f"{header}\n{body}\n… and {total - limit} more not shown here; {more}",
            "\n".join(rows).encode() + b"\n",
        )

    def roles_report(self) -> str:
        """The roles in the Polaris account, and which ones invited people get."""
        refusal = self.blocked("polaris_roles", RSC)
        if refusal:
            return refusal
        assert self.client is not None
        try:
            roles = self.client.roles()
        except Exception as error:
            return _failure("list roles", error)
        configured = {name.lower() for name in self.settings.roles}
        lines = [
            f"{role.name}{' (given to invited people)' if role.name.lower() in configured else ''}"
            for role in roles
        ]
        text = "Polaris roles:\n" + "\n".join(lines)
        if self.queue is not None and self.queue.roles_problem:
            text += f"\nInvites are refused until this is fixed: {self.queue.roles_problem}"
        return text

    def blocked(self, command: str | None, part: str) -> str | None:
        """A sentence saying why ``command`` cannot run now, or None when it can.

        ``command`` None skips the access-control check (anyone may run it); ``part``
        names the settings it needs besides the RSC connection.
        """
        if command is not None and not self.guarded(command):
            return NO_ACCESS_CONTROL
        problems = self.settings.problems_for(RSC, part)
        if part == INVITE and self.queue is not None and self.queue.roles_problem:
            # Known once the role names were looked up; looked up again every minute.
            problems.append(self.queue.roles_problem)
        if problems:
            return "I can't do that until the bot's settings are fixed: " + " ".join(problems)
        return None

    def recheck_roles(self) -> None:
        """Look the role names up again while they are known to be wrong (a poller's job)."""
        if self.queue is None or not self.queue.roles_problem:
            return
        try:
            self.queue.role_ids()
        except PolarisBotError as error:
            log.info("POLARIS_ROLES still cannot be used: %s", error)

    # --- what happens without a command -----------------------------------------------

    def expire_requests(self) -> None:
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
            self.tell(
                request.requester,
                f"Your request {request.id} for a Polaris account ({request.email}) expired: "
                f"no inviter answered within {hours} hours. Ask again with !polaris request "
                "if you still need it.",
            )

    def resume_approved_invites(self) -> None:
        """Send again the invites of requests approved just before the bot stopped.

        Sending again is safe: an account that was created meanwhile comes back as
        "already has an account". The limit was counted at approval.
        """
        if self.queue is None:
            return
        for request in self.approvals.unfinished():
            log.info("resuming the invite of approved request %s", request.id)
            self._start(
                request.requester,
                parse_addresses(request.email)[:1],
                "approve",
                request.where,
                _ignore,
                approver=request.decider,
                request=request,
            )

    # --- the steps --------------------------------------------------------------------

    def _activity(self) -> str:
        since = render.when(self.started)
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

    def _reserve(self, who: str, candidates: Sequence[Candidate]) -> dict[str, str]:
        """Reserve places in ``who``'s hour; the addresses that got none, with the reason."""
        domains = self.settings.allowed_domains
        sendable = [c.email for c in candidates if not refused_by_policy(c, domains)]
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

    def _notify_approvers(self, request: Request) -> int:
        """Tell the approvers' channel, or else each inviter, about a new request."""
        text = (
            f"Polaris request {request.id}: {self.person(request.requester)} asks for an "
            f"account for {request.email}. Approve with !polaris approve {request.id}, or refuse "
            f"with !polaris deny {request.id} [reason]. It expires at "
            f"{render.when(request.expires)}."
        )
        if self.settings.approvers_channel:
            return int(self.tell(self.settings.approvers_channel, text))
        # Glob entries name nobody in particular; the requester cannot approve anyway.
        inviters = [
            u for u in self.approvers() if not set("*?[") & set(u) and u != request.requester
        ]
        return sum(self.tell(inviter, text) for inviter in inviters)

    def _tell_requester_result(self, request: Request, results: list[tuple[str, Outcome]]) -> None:
        """Remember an approved request's outcome and send it to the requester."""
        kinds = ",".join(outcome.kind.name for _, outcome in results) or "NOTHING"
        self.approvals.record_result(request.id, kinds)
        self.tell(
            request.requester,
            f"Your request {request.id} for a Polaris account was approved by "
            f"{self.person(request.decider)}.\n{render.outcome_lines(results)}",
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


def _failure(action: str, error: Exception) -> str:
    """One plain sentence for a failed read; anything unexpected goes to the log only."""
    if isinstance(error, PolarisBotError):
        log.info("could not %s: %s", action, error)
        return f"I couldn't {action}: {error}"
    log.exception("could not %s", action)
    return f"I couldn't {action}: the bot hit an unexpected problem; its log has the details."

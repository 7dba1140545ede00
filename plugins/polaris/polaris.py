"""Errbot commands for inviting people to Rubrik Security Cloud (Polaris).

The plugin is thin: it checks who is asking and where, then hands the work to the
``polarisbot`` library. Slow Polaris calls for invites run on the library's own
bounded queue, so Errbot's thread pool is free again as soon as the
acknowledgement is sent.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from errbot import BotPlugin, botcmd, webhook

from polarisbot import render
from polarisbot.access import entries_that_cannot_match_on_slack, restricted
from polarisbot.addresses import Candidate, parse_addresses
from polarisbot.errors import PolarisBotError
from polarisbot.invites import InviteQueue, start_invites
from polarisbot.messages import SeenMessages, arguments, message_key, requester_email, sender_id
from polarisbot.outcomes import Outcome
from polarisbot.policy import batch_too_large
from polarisbot.rsc import RscClient
from polarisbot.safe_text import neutralize
from polarisbot.settings import INVITE, RSC, Settings, load_settings

USAGE = """\
!polaris invite <email> [<email> ...]   invite people to Polaris (inviters)
!polaris request                        ask for a Polaris account for yourself
!polaris status                         is Polaris reachable, and what the bot has done
!polaris list [text]                    who has access (inviters, in a direct message)
!polaris roles                          the roles in the Polaris account (inviters)"""

NO_PROFILE_EMAIL = (
    "I can't see an email address in your chat profile, so I can't request an account for "
    "you. On Slack, the bot needs the users:read.email scope: ask your Slack admin to add it "
    "to the app and reinstall it."
)

NO_ACCESS_CONTROL = (
    "This command is switched off because access control is not in force: the bot's "
    "operator must load the ACLs plugin and set POLARIS_INVITERS."
)


Respond = Callable[[str], None]


def _where(msg: Any) -> str:
    """Where a message was asked, for the log: a channel id or ``direct``."""
    room = getattr(msg.frm, "room", None) if msg.is_group else None
    return str(getattr(room, "id", None) or room) if room is not None else "direct"


class Polaris(BotPlugin):
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
        for problem in self.settings.problems:
            self.log.warning("setting problem: %s", problem.sentence)
        self._warn_about_slack_acl_entries()
        self._start_webserver()

    def deactivate(self) -> None:
        if self.queue is not None:
            self.queue.close()
        if self.client is not None:
            self.client.close()
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
        email = requester_email(msg)
        yield self.request_for(sender_id(msg), email, where=_where(msg), respond=self._replier(msg))

    # --- the invite paths shared by chat and the slash command -------------------------

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
        """Self-service: invite ``requester``'s own profile ``email``.

        Returns what to say at once; the outcome of a running invite goes to ``respond``.
        """
        refusal = self._refuse(None, INVITE)
        if refusal:
            return refusal
        if not email:
            return NO_PROFILE_EMAIL
        return self._start(requester, parse_addresses(email)[:1], "request", where, respond)

    def _start(
        self,
        who: str,
        candidates: Sequence[Candidate],
        action: str,
        where: str,
        respond: Respond,
    ) -> str:
        assert self.queue is not None
        too_many = batch_too_large(sum(1 for c in candidates if c.email), self.settings.max_batch)
        if too_many:
            return too_many

        started = time.monotonic()
        batch = start_invites(candidates, self.settings.allowed_domains, self.queue)

        def finish(results: list[tuple[str, Outcome]]) -> None:
            self.log.info(
                "%s by %s in %s: %s in %.0f ms",
                action,
                who,
                where,
                ", ".join(f"{o.email} {o.kind.name}" for _, o in results),
                (time.monotonic() - started) * 1000,
            )
            if pending:
                respond(render.outcome_lines(results))

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
            status = self.client.status()
            if status.login_ok:
                lines.append(
                    f"Polaris: reachable, login works, round trip {status.round_trip_ms:.0f} ms."
                )
                lines.append(f"Account: {status.account}, version {status.version}.")
            elif status.reachable:
                lines.append(f"Polaris: reachable, but login fails: {status.error}")
            else:
                lines.append(f"Polaris: not reachable: {status.error}")
        lines.append(self._activity())
        problems = [p.sentence for p in self.settings.problems]
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
        shown: list[str] = []
        total = 0
        try:
            for user in self.client.iter_users(text or None):
                total += 1
                if len(shown) < limit:
                    shown.append(render.user_line(user))
        except Exception as error:
            return self._failure("list users", error)
        if total == 0:
            return "No Polaris users match." if text else "Polaris has no users."
        header = f"{render.plural(total, 'Polaris user')}" + (
            f" matching '{neutralize(text)}':" if text else ":"
        )
        body = "\n".join(shown)
        if total > limit:
            body += f"\n… and {total - limit} more not shown; narrow it with !polaris list <text>."
        return f"{header}\n{body}"

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
        return "Polaris roles:\n" + "\n".join(lines)

    # --- the invite path shared by invite and request ---------------------------------

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

"""Errbot commands for inviting people to Rubrik Security Cloud (Polaris).

The plugin is thin: it reads who is asking and where, then hands the work to the
``polarisbot`` library, the workflow to its ``Desk``. Slow Polaris calls for invites
run on the library's own bounded queue, so Errbot's thread pool is free again as soon
as the acknowledgement is sent.
"""

from __future__ import annotations

import gc
import io
import os
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from errbot import BotPlugin, botcmd, webhook

from polarisbot.access import (
    SLACK_MEMBER_ID,
    entries_that_cannot_match_on_slack,
    restricted,
    rule_for,
)
from polarisbot.approvals import Approvals
from polarisbot.audit import AuditTrail
from polarisbot.desk import LIST_FILE, Desk, Respond
from polarisbot.errors import PolarisBotError
from polarisbot.invites import InviteQueue
from polarisbot.limits import HourlyLimit
from polarisbot.messages import SeenMessages, arguments, message_key, requester_email, sender_id
from polarisbot.outcomes import Outcome
from polarisbot.rsc import RscClient
from polarisbot.safe_text import neutralize
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

# Expired requests are found by this poller, and also whenever requests are read.
EXPIRY_POLL_SECONDS = 60.0
STATUS_WAIT_SECONDS = 5.0
SLACK_CHANNEL = re.compile(r"^[CG][A-Z0-9]{2,}$")


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
        self.desk = Desk(
            self.settings,
            self.client,
            self.queue,
            self.approvals,
            self.audit,
            self.limits,
            tell=self._tell,
            person=self._person,
            guarded=self._access_control_in_force,
            approvers=self._approvers,
            started=self.started,
        )
        self.start_poller(EXPIRY_POLL_SECONDS, self._every_minute)
        self.desk.resume_approved_invites()
        for problem in self.settings.problems:
            self.log.warning("setting problem: %s", problem.sentence)
        self._warn_about_slack_acl_entries()
        self._start_webserver()

    def _every_minute(self) -> None:
        self.desk.expire_requests()
        self.desk.recheck_roles()

    def _warm_up(self) -> None:
        try:
            if self.queue is not None and not self.settings.problems_for(RSC, INVITE):
                self.queue.role_ids()
        except PolarisBotError as error:
            self.log.warning("could not prepare invites at start-up: %s", error)
        except Exception:
            self.log.exception("could not prepare invites at start-up")
        finally:
            # Everything made while starting lives as long as the bot. Frozen, it is left
            # out of the garbage collector's full passes, which otherwise stop every thread
            # for tens of milliseconds in the middle of a burst of commands.
            gc.collect()
            gc.freeze()
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
        if self._redelivered(msg):
            return
        text = arguments(msg, args, "invite")
        yield self.desk.invite_for(
            sender_id(msg), text, where=_where(msg), respond=self._replier(msg)
        )

    @botcmd
    def polaris_request(self, msg: Any, args: str) -> Iterator[str]:
        """Ask for a Polaris account for yourself, with your chat profile's email."""
        if self._redelivered(msg):
            return
        # The address comes from the profile, never from the message text.
        email = requester_email(msg) or self._console_email(msg)
        if not email and self._bot.mode == "text":
            yield (
                "The console has no profile email for you: set POLARIS_CONSOLE_EMAILS, "
                "e.g. POLARIS_CONSOLE_EMAILS=you=you@example.com (the demo sets it)."
            )
            return
        yield self.desk.request_for(
            sender_id(msg), email, where=_where(msg), respond=self._replier(msg)
        )

    @botcmd
    def polaris_pending(self, msg: Any, args: str) -> str:
        """Requests for an account waiting for an inviter's approval."""
        return self.desk.pending_report()

    @botcmd
    def polaris_approve(self, msg: Any, args: str) -> Iterator[str]:
        """Approve a request, which invites its requester: !polaris approve <id>"""
        if self._redelivered(msg):
            return
        text = arguments(msg, args, "approve")
        yield self.desk.approve_for(
            sender_id(msg), text, where=_where(msg), respond=self._replier(msg)
        )

    @botcmd
    def polaris_deny(self, msg: Any, args: str) -> Iterator[str]:
        """Refuse a request and tell its requester why: !polaris deny <id> [reason]"""
        if self._redelivered(msg):
            return
        yield self.desk.deny_for(sender_id(msg), arguments(msg, args, "deny"), where=_where(msg))

    @botcmd
    def polaris_audit(self, msg: Any, args: str) -> str:
        """Who asked, who granted what, and when: !polaris audit [email|count]"""
        return self.desk.audit_report(arguments(msg, args, "audit"), private=msg.is_direct)

    @botcmd
    def polaris_status(self, msg: Any, args: str) -> str:
        """Is Polaris reachable, does login work, and what the bot has done."""
        # Just after start-up, let the first login and role look-up finish (they are
        # bounded by the RSC timeouts) so that status reports what they found.
        self.ready.wait(STATUS_WAIT_SECONDS)
        return self.desk.status_report()

    @botcmd
    def polaris_list(self, msg: Any, args: str) -> str:
        """Who has a Polaris account: !polaris list [part of an email]"""
        listing = self.desk.users_report(
            arguments(msg, args, "list"),
            private=msg.is_direct,
            with_file=self._bot.mode in FILE_BACKENDS,
        )
        if listing.file is not None:
            self.send_stream_request(
                msg.frm,
                io.BytesIO(listing.file),
                name=LIST_FILE,
                size=len(listing.file),
                stream_type="text/plain",
            )
        return listing.text

    @botcmd
    def polaris_roles(self, msg: Any, args: str) -> str:
        """The roles in the Polaris account, and which ones invited people get."""
        return self.desk.roles_report()

    # --- helpers ------------------------------------------------------------------

    def _redelivered(self, msg: Any) -> bool:
        """True for a message handled before (Slack redelivers, and edits reuse the id)."""
        if self.seen.first_time(message_key(msg)):
            return False
        self.log.info("ignored a redelivered message from %s", sender_id(msg))
        return True

    def _tell(self, target: str, text: str) -> bool:
        """A direct message to a person (or a post to a channel) by id; False if it failed."""
        try:
            self.send(self.build_identifier(self._address(target)), text)
        except Exception:  # a lost notification must not undo the decision behind it
            self.log.warning("could not send a message to %s", target, exc_info=True)
            return False
        return True

    def _approvers(self) -> list[str]:
        """The entries of the approve command's allowusers rule (globs included)."""
        rule = rule_for(
            f"{self.name}:polaris_approve",
            self.bot_config.ACCESS_CONTROLS,
            self.bot_config.ACCESS_CONTROLS_DEFAULT,
        )
        allowed = rule.get("allowusers") or ()
        return [allowed] if isinstance(allowed, str) else list(allowed)

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
            if SLACK_MEMBER_ID.match(target):
                return f"<@{target}>"
            if SLACK_CHANNEL.match(target):
                return f"<#{target}>"
        return target

    def _person(self, member_id: str) -> str:
        """A person in a message: a mention on Slack, the id elsewhere."""
        if self._bot.mode in ("slack", "slackv3") and SLACK_MEMBER_ID.match(member_id):
            return f"<@{member_id}>"
        return member_id

    def _replier(self, msg: Any) -> Respond:
        """Send later answers where ``msg`` was asked: its thread, channel or DM."""
        return lambda text: self._bot.send_simple_reply(msg, text)

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

"""Failure alerts as Airflow notifiers, used through `on_failure_callback` (every DAG gets them from
`yorisoi.orchestration.dag_defaults.DEFAULT_ARGS`).

- **Email** (`failure_email`): the SMTP provider's `SmtpNotifier` through the Airflow connection
  `smtp_default` (host, port, login / password; extra `disable_tls` / `disable_ssl` as needed),
  to the addresses in the Airflow Variable `yorisoi_alert_emails` (comma-separated; env
  `AIRFLOW_VAR_YORISOI_ALERT_EMAILS` works too). No recipients configured: nothing is sent.
- **Slack** (`failure_slack`): an incoming-webhook POST; the webhook URL is the password (or the
  host) of the Airflow connection `yorisoi_slack_webhook`. No connection: nothing is sent.

Both render the failed task, the run and the exception: for a quality gate, the list of failed
suites and expectations and where the Data Docs are; and both end with what to do
(`yorisoi.runbook`: the step and its section of docs/runbook.md). The email subject reads
`[Yorisoi] <dag_id>.<task_id> failed (run <run_id>)`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.sdk.bases.notifier import BaseNotifier

SMTP_CONN_ID = "smtp_default"
SLACK_CONN_ID = "yorisoi_slack_webhook"
RECIPIENTS = "{{ var.value.get('yorisoi_alert_emails', '') }}"
SENDER = "{{ var.value.get('yorisoi_alert_from', 'yorisoi-alerts@localhost') }}"
SUBJECT = "[Yorisoi] {{ ti.dag_id }}.{{ ti.task_id }} failed (run {{ ti.run_id }})"
BODY = """<html><body>
<p><b>{{ ti.dag_id }}.{{ ti.task_id }}</b> failed (run {{ ti.run_id }}, try {{ ti.try_number }}).
Nothing downstream of it ran.</p>
<pre>{{ (exception | string)[:20000] | e }}</pre>
<p>Log: <a href="{{ ti.log_url }}">{{ ti.log_url }}</a></p>
<p><b>{{ next_step | e }}</b></p>
</body></html>"""
SLACK_TEXT = (
    ":rotating_light: *{{ ti.dag_id }}.{{ ti.task_id }}* failed (run `{{ ti.run_id }}`); nothing downstream ran.\n"
    "```{{ (exception | string)[:2500] }}```\n<{{ ti.log_url }}|Log>\n*{{ next_step }}*"
)


def _with_next_step(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The callback's context with `next_step`, the alert's last line, for the templates."""
    from ..runbook import next_step_for

    if len(args) == 1 and isinstance(args[0], Mapping):
        context = args[0]
        return ({**context, "next_step": next_step_for(context.get("exception"))},)
    return args


def _addresses(value: Any) -> list[str]:
    if isinstance(value, str):
        return [a for a in re.split(r"[,;\s]+", value) if a]
    return [str(a) for a in value or [] if a]


class FailureEmail(SmtpNotifier):
    """`SmtpNotifier` that renders a fresh copy per call (rendering mutates template fields, and
    one instance serves every task of a DAG) and sends nothing when no recipient is configured."""

    def __call__(self, *args: Any) -> None:
        return SmtpNotifier.__call__(copy.copy(self), *_with_next_step(args))

    def notify(self, context: Any) -> None:
        recipients = _addresses(self.to)
        if not recipients:
            self.log.warning("no alert sent: set the Airflow Variable yorisoi_alert_emails to receive failures")
            return
        self.to = recipients
        super().notify(context)


class SlackWebhookNotifier(BaseNotifier):
    """POSTs `{"text": ...}` to a Slack incoming webhook whose URL is the password (or host) of
    the Airflow connection `conn_id`; sends nothing when the connection does not exist.

    :param text: the message (Jinja; template field).
    :param conn_id: the Airflow connection holding the webhook URL.
    :param timeout: seconds to wait for Slack.
    """

    template_fields = ("text", "conn_id")

    def __init__(self, *, text: str = SLACK_TEXT, conn_id: str = SLACK_CONN_ID, timeout: float = 10.0):
        super().__init__()
        self.text = text
        self.conn_id = conn_id
        self.timeout = timeout

    def __call__(self, *args: Any) -> None:
        return BaseNotifier.__call__(copy.copy(self), *_with_next_step(args))

    def webhook_url(self) -> str | None:
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException, AirflowRuntimeError

        try:
            conn = BaseHook.get_connection(self.conn_id)
        except (AirflowNotFoundException, AirflowRuntimeError):
            return None
        for value in (conn.password, conn.host):
            if value and value.startswith(("https://", "http://")):
                return value
        return None

    def notify(self, context: Any) -> None:
        import httpx

        url = self.webhook_url()
        if not url:
            self.log.info("no Slack alert sent: no webhook connection %s", self.conn_id)
            return
        httpx.post(url, json={"text": self.text}, timeout=self.timeout).raise_for_status()


def failure_email(
    to: str | list[str] = RECIPIENTS, *, smtp_conn_id: str = SMTP_CONN_ID, from_email: str = SENDER
) -> FailureEmail:
    """The failure email: `SmtpNotifier` on `smtp_conn_id`, subject naming the DAG, task and run,
    body with the exception (a gate's failed suites and expectations) and the log link."""
    return FailureEmail(to=to, from_email=from_email, subject=SUBJECT, html_content=BODY, smtp_conn_id=smtp_conn_id)


def failure_slack(*, conn_id: str = SLACK_CONN_ID) -> SlackWebhookNotifier:
    """The failure message to a Slack incoming webhook (connection `conn_id`)."""
    return SlackWebhookNotifier(conn_id=conn_id)


def failure_notifiers() -> list[BaseNotifier]:
    """What every DAG's `on_failure_callback` gets besides the log line: email and Slack."""
    return [failure_email(), failure_slack()]

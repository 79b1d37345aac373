"""One class per channel kind, each with `send(message)` (like Healthchecks' transports).

A transport raises TransportError on failure, saying whether trying again could help
(`permanent=False`: a refused connection, a time-out, HTTP 5xx, SMTP 4xx) or not
(`permanent=True`: HTTP 4xx, SMTP 5xx, a bad password or certificate). Retrying is the
outbox's business (delivery.py), never the transport's.

Recipients already reached are in `message.reached`; transports that send to several
recipients one by one skip them and call `message.mark_reached(recipient)` after each,
so a delivery retried after a crash or a partial failure reaches the others only.
"""
import hashlib
import hmac
import json
import smtplib
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.smtp import EmailBackend
from django.utils.functional import cached_property

from .choices import SYSLOG_FACILITIES, ChannelKind, SmtpSecurity, SyslogProtocol
from .syslog_format import format_rfc5424

SIGNATURE_HEADER = "X-Sesam-Signature"
TIMESTAMP_HEADER = "X-Sesam-Timestamp"
DELIVERY_HEADER = "X-Sesam-Delivery"
EVENT_HEADER = "X-Sesam-Event"


class TransportError(Exception):
    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class Transport:
    """Shared by every kind: the channel's settings, its secret, the time-out."""

    def __init__(self, channel):
        self.channel = channel
        self.config = channel.config or {}

    @property
    def timeout(self) -> float:
        return settings.SESAM_NOTIFY_TIMEOUT

    def secret(self) -> str:
        try:
            return self.channel.get_secret()
        except Exception as exc:  # SecretDecryptionError: a changed SESAM_SECRET_KEY
            raise TransportError(f"cannot read the channel's secret: {exc}", permanent=True) from exc

    def send(self, message) -> None:
        raise NotImplementedError


class HttpTransport(Transport):
    """HTTP requests with the status mapped to transient or permanent errors."""

    def request(self, url, *, body: bytes | None = None, headers=None, method="POST") -> bytes:
        req = urllib.request.Request(url, data=body, method=method,
                                     headers={"User-Agent": "sesamweb-notify", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                return response.read(65536)
        except urllib.error.HTTPError as exc:
            permanent = 400 <= exc.code < 500 and exc.code not in (408, 425, 429)
            raise TransportError(f"{urllib.parse.urlsplit(url).netloc} answered HTTP {exc.code} {exc.reason}",
                                 permanent=permanent) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransportError(f"could not reach {urllib.parse.urlsplit(url).netloc}: {reason}") from exc


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>." + body, hex, prefixed "v1=" (see the README)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify_webhook(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance=300, now=None) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent (no replays
    of an old message; receivers also drop an X-Sesam-Delivery id they have already seen)."""
    try:
        age = abs((now if now is not None else time.time()) - int(timestamp))
    except (TypeError, ValueError):
        return False
    return age <= tolerance and hmac.compare_digest(webhook_signature(secret, timestamp, body), signature or "")


class WebhookTransport(HttpTransport):
    def send(self, message):
        body = json.dumps(message.payload(), separators=(",", ":"), sort_keys=True).encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", EVENT_HEADER: message.name, TIMESTAMP_HEADER: timestamp,
                   DELIVERY_HEADER: str(message.delivery_id or "")}
        secret = self.secret()
        if secret:
            headers[SIGNATURE_HEADER] = webhook_signature(secret, timestamp, body)
        self.request(self.config["url"], body=body, headers=headers)


class SmsGatewayTransport(HttpTransport):
    """An HTTP SMS gateway: one request per recipient from the URL and body templates
    ({to}, {message}, {token}; URL values are URL-encoded, body values escaped for its type)."""

    def _fill(self, template, values, escape):
        return template.format_map({key: escape(value) for key, value in values.items()})

    def send(self, message):
        token = self.secret()
        content_type = self.config.get("content_type") or "application/x-www-form-urlencoded"
        if content_type == "application/json":
            body_escape = lambda value: json.dumps(value)[1:-1]  # noqa: E731 - inside a JSON string
        else:
            body_escape = lambda value: urllib.parse.quote_plus(value)  # noqa: E731
        method = self.config.get("method") or "POST"
        for recipient in self.config.get("recipients") or []:
            if recipient in message.reached:
                continue
            values = {"to": recipient, "message": message.short, "token": token}
            url = self._fill(self.config["url"], values, lambda value: urllib.parse.quote(value, safe=""))
            body = None
            if method == "POST":
                body = self._fill(self.config.get("body_template") or "", values, body_escape).encode()
            headers = {"Content-Type": content_type}
            if token and self.config.get("token_header"):
                headers[self.config["token_header"]] = token
            self.request(url, body=body, headers=headers, method=method)
            message.mark_reached(recipient)


class SmtpBackend(EmailBackend):
    """Django's SMTP backend, verifying the server against the channel's own CA
    certificate when one is given (a private mail relay), else the system's."""

    def __init__(self, *, ca_pem: str = "", **kwargs):
        super().__init__(**kwargs)
        self.ca_pem = ca_pem

    @cached_property
    def ssl_context(self):
        return ssl.create_default_context(cadata=self.ca_pem or None)


class EmailTransport(Transport):
    """SMTP through Django's mail backend: plain text and HTML, several recipients."""

    def connection(self):
        security = self.config.get("security") or SmtpSecurity.NONE
        return SmtpBackend(
            ca_pem=self.config.get("ca_pem") or "", fail_silently=False, host=self.config.get("host") or "localhost",
            port=int(self.config.get("port") or 25), username=self.config.get("username") or "",
            password=self.secret(), use_tls=security == SmtpSecurity.STARTTLS,
            use_ssl=security == SmtpSecurity.TLS, timeout=self.timeout,
        )

    def email(self, message, recipients):
        email = EmailMultiAlternatives(message.subject, message.text, self.config.get("from_address")
                                       or settings.DEFAULT_FROM_EMAIL, recipients)
        email.attach_alternative(message.html, "text/html")
        return email

    def send(self, message):
        recipients = [r for r in self.config.get("recipients") or [] if r not in message.reached]
        if not recipients:
            return
        try:
            with self.connection() as connection:
                connection.send_messages([self.email(message, recipients)])
        except smtplib.SMTPAuthenticationError as exc:
            raise TransportError(f"the mail server refused the user name or password: {exc.smtp_code} "
                                 f"{_smtp_text(exc.smtp_error)}", permanent=True) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            refused = ", ".join(sorted(exc.recipients))
            raise TransportError(f"the mail server refused the recipients {refused}", permanent=True) from exc
        except smtplib.SMTPResponseException as exc:
            raise TransportError(f"the mail server answered {exc.smtp_code} {_smtp_text(exc.smtp_error)}",
                                 permanent=exc.smtp_code >= 500) from exc
        except ssl.SSLCertVerificationError as exc:
            raise TransportError(f"the mail server's certificate is not trusted: {exc.verify_message}",
                                 permanent=True) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TransportError(f"could not send through {self.config.get('host')}:{self.config.get('port')}: "
                                 f"{exc}") from exc
        for recipient in recipients:
            message.mark_reached(recipient)


class SmsEmailTransport(EmailTransport):
    """Email-to-SMS addresses (e.g. 5551234@sms.example): the short text only."""

    def email(self, message, recipients):
        return EmailMultiAlternatives("", message.short, self.config.get("from_address")
                                      or settings.DEFAULT_FROM_EMAIL, recipients)


def _smtp_text(error) -> str:
    return error.decode(errors="replace") if isinstance(error, bytes) else str(error)


def tls_context(ca_pem: str = "", verify: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem or None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def send_syslog(line: bytes, *, host: str, port: int, protocol: str, timeout: float, ca_pem: str = "",
                verify_tls: bool = True) -> None:
    """One RFC 5424 line to a collector: a UDP datagram, or over TCP / TLS with RFC 6587
    octet counting. Raises TransportError (a certificate that is not trusted: permanent)."""
    try:
        if protocol == SyslogProtocol.UDP:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.sendto(line, (host, port))
            return
        framed = str(len(line)).encode() + b" " + line
        with socket.create_connection((host, port), timeout=timeout) as raw:
            if protocol == SyslogProtocol.TLS:
                with tls_context(ca_pem, verify_tls).wrap_socket(raw, server_hostname=host) as sock:
                    sock.sendall(framed)
            else:
                raw.sendall(framed)
    except ssl.SSLCertVerificationError as exc:
        raise TransportError(f"the syslog server's certificate is not trusted: {exc.verify_message}",
                             permanent=True) from exc
    except (OSError, ssl.SSLError) as exc:
        raise TransportError(f"could not send to syslog {host}:{port} over {protocol}: {exc}") from exc


class SyslogTransport(Transport):
    """RFC 5424 messages over UDP (one datagram), TCP or TLS (RFC 6587 octet counting)."""

    def send(self, message):
        facility = SYSLOG_FACILITIES.get(self.config.get("facility") or "user", 1)
        line = format_rfc5424(message, facility=facility, app_name=self.config.get("app_name") or "sesamweb")
        send_syslog(line, host=self.config["host"], port=int(self.config.get("port") or 514),
                    protocol=self.config.get("protocol") or SyslogProtocol.UDP, timeout=self.timeout,
                    ca_pem=self.config.get("ca_pem") or "", verify_tls=self.config.get("verify_tls", True))


TRANSPORTS = {
    ChannelKind.EMAIL: EmailTransport,
    ChannelKind.SMS_EMAIL: SmsEmailTransport,
    ChannelKind.SMS_GATEWAY: SmsGatewayTransport,
    ChannelKind.WEBHOOK: WebhookTransport,
    ChannelKind.SYSLOG: SyslogTransport,
}


def transport_for(channel) -> Transport:
    return TRANSPORTS[channel.kind](channel)

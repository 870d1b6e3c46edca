"""AMQP errors that carry their reply code.

Code in `amqp` and `broker` raises these; only the session turns them into channel.close or
connection.close. The reply text follows RabbitMQ's form: ``"NOT_FOUND - no queue 'q' in vhost '/'"``.
"""

from __future__ import annotations

from router.amqp.constants import REPLY_NAMES


def fit_shortstr(text: str) -> str:
    """``text`` cut to the 255 bytes a short string holds, never inside a UTF-8 character."""
    raw = text.encode("utf-8", "surrogateescape")
    if len(raw) <= 255:
        return text
    return raw[:255].decode("utf-8", "ignore")


class AMQPError(Exception):
    """Base of the errors that close a channel or the connection with a reply code."""

    def __init__(self, reply_code: int, text: str, class_id: int = 0, method_id: int = 0) -> None:
        super().__init__(text)
        self.reply_code = reply_code
        self.text = text
        self.class_id = class_id
        self.method_id = method_id

    @property
    def reply_text(self) -> str:
        """The text as sent on the wire: the code's name, a dash, then what was wrong."""
        return fit_shortstr(f"{REPLY_NAMES.get(self.reply_code, 'ERROR')} - {self.text}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reply_code}, {self.text!r})"


class ChannelError(AMQPError):
    """A soft error: closes the channel it happened on, the connection lives on."""


class ConnectionError(AMQPError):
    """A hard error: closes the whole connection."""


class FrameError(ConnectionError):
    """Malformed bytes on the wire (501 FRAME_ERROR or 502 SYNTAX_ERROR)."""


class FramingError(FrameError):
    """The byte stream itself is broken (bad frame end, oversized frame): nothing after it can
    be parsed, so the connection is closed without waiting for close-ok."""

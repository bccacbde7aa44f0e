"""The terminal screen when a person is at a terminal: rendered Markdown streamed live (rich)
and a prompt with line editing and history (prompt_toolkit). Imported only then.

Links render as ``label (url)``, never as a hidden hyperlink, so a document cannot disguise
where a link goes (as the Slack adapter defangs them); control characters are dropped before
rendering (rich's Markdown keeps them), so a document cannot send escape sequences to the
terminal either.
"""

from __future__ import annotations

import contextlib
import sys
import termios
from collections.abc import Iterator

from prompt_toolkit import PromptSession
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.spinner import Spinner
from rich.text import Text

from bot.cli.screen import AnswerSink, Interrupted, citation_lines, printable
from bot.core.types import ExchangeResult

# Parsing and rendering the whole Markdown on every streamed piece is wasted work: the live
# view is redrawn this often instead (and once more, complete, at the end).
REFRESH_PER_SECOND = 15


def _bindings() -> KeyBindings:
    kb = KeyBindings()

    @kb.add("c-c")
    def _ctrl_c(event: KeyPressEvent) -> None:
        """Ctrl-C clears a line with text; on an empty line it leaves (like a shell)."""
        buffer = event.app.current_buffer
        if buffer.text:
            buffer.reset()
        else:
            event.app.exit(exception=Interrupted())

    return kb


@contextlib.contextmanager
def no_echo() -> Iterator[None]:
    """While an answer streams, keys typed (and the "^C" of Ctrl-C) are not echoed into the
    live view, which would shift it; Ctrl-C still arrives as a signal."""
    try:
        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
    except (OSError, ValueError, termios.error):
        yield
        return
    quiet = list(saved)
    quiet[3] &= ~(termios.ECHO | termios.ECHOCTL)
    try:
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
        yield
    finally:
        with contextlib.suppress(OSError, termios.error):
            termios.tcsetattr(fd, termios.TCSANOW, saved)


def closed(text: str) -> str:
    """Part of an answer with its open code block, code span or bold closed for display, so
    that ``**five`` shows as bold "five" while "days**" is still on its way, not as stars."""
    if text.count("```") % 2:
        return text + "\n```"
    prose = "".join(text.split("```")[::2])  # outside code blocks
    if prose.count("`") % 2:
        return text + "`"
    if prose.count("**") % 2:  # a bold is open (it cannot close after a space)
        body = text.rstrip()
        return body[:-2] if body.endswith("**") else body.rstrip("*") + "**"
    if text.endswith("*") and not text.endswith("**"):  # perhaps half of the next "**"
        return text[:-1]
    return text


class LiveSink:
    """The answer as rendered Markdown, redrawn as it streams; a spinner until it starts."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.text = ""
        self._quiet = contextlib.ExitStack()
        self._quiet.enter_context(no_echo())
        self.live = Live(
            Spinner("dots", text=Text(" thinking…", style="dim")),
            console=console,
            refresh_per_second=REFRESH_PER_SECOND,
            transient=False,
        )
        self.live.start()

    def _view(self) -> RenderableType:
        return Markdown(printable(self.text), hyperlinks=False)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """The answer so far, parsed only when the live view redraws (REFRESH_PER_SECOND),
        not once per streamed piece."""
        yield Markdown(closed(printable(self.text)), hyperlinks=False)

    async def status(self, text: str) -> None:
        self.console.print(Text(printable(text), style="dim italic"))

    async def write(self, text: str) -> None:
        if not self.text:
            self.live.update(self)  # the spinner gives way to the answer
        self.text += text

    async def replace(self, text: str) -> None:
        """The live view is redrawn: the answer shown so far gives way to ``text``."""
        self.text = text

    async def close(self, result: ExchangeResult) -> None:
        self.live.update(self._view() if self.text else Text(""), refresh=True)
        self.live.stop()
        self._quiet.close()


class RichScreen:
    def __init__(self) -> None:
        self.console = new_console()
        bindings = _bindings()
        self.questions: PromptSession[str] = PromptSession(
            history=InMemoryHistory(), key_bindings=bindings
        )
        self.replies: PromptSession[str] = PromptSession(key_bindings=bindings)

    async def read(self, prompt: str, *, history: bool = True) -> str | None:
        session = self.questions if history else self.replies
        if history:
            self.console.print()  # a blank line between one exchange and the next
        try:
            # SIGINT stays with the chat (it stops answers); while this prompt reads, the
            # terminal is raw and Ctrl-C arrives as a key (the binding above).
            return await session.prompt_async(
                FormattedText([("bold ansicyan", prompt)]), handle_sigint=False
            )
        except EOFError:
            return None
        except KeyboardInterrupt as exc:
            raise Interrupted() from exc

    def interrupt(self) -> None:
        """A prompt reads Ctrl-C as a key; a signal arrives only between prompts."""

    def say(self, text: str) -> None:
        self.console.print(Text(printable(text)))

    def note(self, text: str) -> None:
        self.console.print(Text(text, style="dim"))

    def answer_sink(self) -> AnswerSink:
        return LiveSink(self.console)

    def sources(self, result: ExchangeResult) -> None:
        show_sources(self.console, result)


def new_console() -> Console:
    return Console(highlight=False, soft_wrap=False)


def show_sources(console: Console, result: ExchangeResult) -> None:
    """The cited sources under an answer: number, title, where it is, its date."""
    rows = citation_lines(result)
    if not rows:
        return
    lines = [Text(""), Text("Sources", style="bold dim")]
    for ref, title, where, date in rows:
        line = Text.assemble((f" {ref}. ", "bold"), (title, "bold"), "  ", (where, "cyan"))
        if date:
            line.append(f"  {date}", style="dim")
        lines.append(line)
    console.print(Group(*lines))

"""tqdm progress bars that redraw in place on a terminal and stay sparse in a log (plain Python)."""
from __future__ import annotations

import sys


class LineStream:
    """A non-terminal stream for tqdm: each redraw ends its line instead of returning the carriage."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace('\r', '')
        if text.strip():
            self.stream.write(text.rstrip('\n') + '\n')

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(log_interval: float = 30.0, **kwargs):
    """``tqdm(**kwargs)`` on stderr: redrawn in place on a terminal; elsewhere (a log file, CI)
    at most every ``log_interval`` seconds, each redraw on a line of its own."""
    from tqdm import tqdm
    tty = sys.stderr.isatty()
    return tqdm(file=sys.stderr if tty else LineStream(sys.stderr), dynamic_ncols=tty, ascii=not tty,
                mininterval=0.1 if tty else log_interval, **kwargs)

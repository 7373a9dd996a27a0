"""A progress line for a phase that reports no progress of its own (a library's trainer, a save)."""

from __future__ import annotations

import threading

from tqdm import tqdm


class Ticker:
    """A progress line for a phase that reports nothing itself (SentencePiece's training, saving):
    the phase's name and its elapsed time, refreshed twice a second, so a long phase shows life."""

    def __init__(self, desc: str):
        self.desc = desc
        self.bar: tqdm | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._tick, daemon=True)

    def _tick(self) -> None:
        while not self.stop.wait(0.5):
            self.bar.refresh()

    def start(self) -> None:
        self.bar = tqdm(desc=self.desc, bar_format="{desc}: {elapsed} elapsed", dynamic_ncols=True)
        self.thread.start()

    def end(self) -> None:
        """Stop the line; a no-op if it never started."""
        if self.bar is not None:
            self.stop.set()
            self.thread.join()
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Ticker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()

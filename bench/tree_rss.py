"""Peak memory of a process tree, sampled in a thread: for benches, and the tests that bound it."""

from __future__ import annotations

import threading

import psutil

RSS_INTERVAL_S = 0.05
PSS_EVERY = 5  # PSS (smaps_rollup) costs ~10x an RSS read: sample it every 5th time only


class TreeRss:
    """Peak memory of a process and all its descendants, sampled every RSS_INTERVAL_S in a thread.

    ``peak_sum``: the most RSS the tree held at once. Pages a forked worker
    shares with the parent count in both, so this overstates; ``peak_pss``
    (proportional set size, shared pages split between their users) is what
    the tree really held, sampled less often. ``peak_one``: the largest
    single process's RSS.
    """

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.peak_sum = self.peak_one = self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self, pss: bool) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        rss, shares = [], []
        for p in procs:
            try:
                if pss:
                    info = p.memory_full_info()
                    rss.append(info.rss)
                    shares.append(info.pss)
                else:
                    rss.append(p.memory_info().rss)
            except psutil.Error:  # exited between listing and reading
                pass
        if rss:
            self.peak_sum = max(self.peak_sum, sum(rss))
            self.peak_one = max(self.peak_one, max(rss))
            self.peak_pss = max(self.peak_pss, sum(shares))

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            self._sample(pss=n % PSS_EVERY == 0)
            n += 1
            self._stop.wait(RSS_INTERVAL_S)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

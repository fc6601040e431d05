"""Incremental detokenization and stop strings.

``TextStream`` turns token pieces (bytes) into text as it becomes valid UTF-8 and holds back any
tail that could still become a stop string, so a stop string never leaks into streamed output.
"""

from __future__ import annotations

import codecs


class TextStream:
    def __init__(self, stop: tuple[str, ...] = (), include_stop: bool = False) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = tuple(s for s in stop if s)
        self._include_stop = include_stop
        self._held = ""  # decoded text not yet released
        self.stopped = False
        self.matched_stop: str | None = None

    def push(self, piece: bytes) -> str:
        """Feed one token's bytes; return the text that is now safe to release."""
        if self.stopped:
            return ""
        self._held += self._decoder.decode(piece)
        if not self._stop:
            out, self._held = self._held, ""
            return out
        hit = self._earliest_stop()
        if hit is not None:
            index, stop = hit
            self.stopped = True
            self.matched_stop = stop
            end = index + len(stop) if self._include_stop else index
            out, self._held = self._held[:end], ""
            return out
        keep = self._partial_stop_suffix()
        cut = len(self._held) - keep
        out, self._held = self._held[:cut], self._held[cut:]
        return out

    def flush(self) -> str:
        """Release everything held (the sequence ended without a stop string)."""
        if self.stopped:
            return ""
        out = self._held + self._decoder.decode(b"", final=True)
        self._held = ""
        return out

    def _earliest_stop(self) -> tuple[int, str] | None:
        best: tuple[int, str] | None = None
        for stop in self._stop:
            index = self._held.find(stop)
            if index != -1 and (best is None or index < best[0]):
                best = (index, stop)
        return best

    def _partial_stop_suffix(self) -> int:
        """Length of the longest tail of the held text that begins some stop string."""
        longest = 0
        for stop in self._stop:
            for size in range(min(len(stop) - 1, len(self._held)), longest, -1):
                if self._held.endswith(stop[:size]):
                    longest = size
                    break
        return longest

"""Fault injection for tests: failed calls, dropped or slowed transfers, full SRs."""

import threading


class Faults:
    def __init__(self):
        self._lock = threading.Lock()
        self.call_failures: dict[str, list[list[str]]] = {}  # method -> errors for its next calls
        self.transfer_drops: list[int] = []                  # next transfers: drop after N bytes
        self.transfer_rate: int = 0                          # bytes/s for transfers, 0 = unlimited
        self.sr_fill: dict[str, int] = {}                    # SR ref -> bytes of injected usage

    def fail_next_call(self, method: str, error: list[str], times: int = 1) -> None:
        with self._lock:
            self.call_failures.setdefault(method, []).extend([list(map(str, error))] * times)

    def take_call_failure(self, method: str) -> list[str] | None:
        if not self.call_failures:
            return None
        with self._lock:
            queue = self.call_failures.get(method)
            if not queue:
                return None
            error = queue.pop(0)
            if not queue:
                del self.call_failures[method]
            return error

    def drop_transfers_after(self, nbytes: int, count: int = 1) -> None:
        with self._lock:
            self.transfer_drops.extend([int(nbytes)] * count)

    def take_transfer_drop(self) -> int | None:
        with self._lock:
            return self.transfer_drops.pop(0) if self.transfer_drops else None

    def clear(self) -> None:
        with self._lock:
            self.call_failures.clear()
            self.transfer_drops.clear()
            self.transfer_rate = 0
            self.sr_fill.clear()

"""Optuna samplers that Ray Tune can save with its searcher.

Tune pickles the searcher (and so its sampler) when a run starts. Optuna 5.1's NSGA-II sampler
holds a `threading.Lock`, which does not pickle ("cannot pickle '_thread.lock' object"): the
lock is dropped from the saved state and a fresh one made when it is loaded.
"""

from __future__ import annotations

import threading
from typing import Any

import optuna


class NSGAIISampler(optuna.samplers.NSGAIISampler):
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_had_thread_lock"] = state.pop("_thread_lock", None) is not None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        had_lock = state.pop("_had_thread_lock", False)
        self.__dict__.update(state)
        if had_lock:
            self._thread_lock = threading.Lock()

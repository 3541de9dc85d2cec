"""Changes measured here but not shipped: what they would buy, for the maintainers to decide.

:class:`FoldingRunner` is ``LocalRunner`` with one difference: a wave that leaves only built-in
``Done`` steps runnable completes them before its write, instead of writing once with ``Done``
active and once more, completed, after a wave of its own. ``Done.execute`` returns None and
cannot fail, so the final state is the same; what changes is one write fewer per finished
path, and that the "running, ``Done`` active" state is never stored. The runner's tests pin the
extra write down ("one per wave: ..., Done"), so shipping this is a behaviour change to agree on.
The override repeats ``LocalRunner._save_wave`` with the fold added.
"""

from __future__ import annotations

from datetime import datetime

from hephaestus_django.core import engine
from hephaestus_django.core.engine import StepResult
from hephaestus_django.core.instance import Instance
from hephaestus_django.core.steps import Done
from hephaestus_django.runtime import LocalRunner
from hephaestus_django.runtime.leases import with_lease
from hephaestus_django.runtime.storage import Storage


class FoldingRunner(LocalRunner):
    """``LocalRunner``, with built-in ``Done`` steps completed in the write that reached them."""

    def _save_wave(
        self, instance: Instance, results: list[StepResult], storage: Storage, owner: str
    ) -> Instance:
        def apply(base: Instance) -> Instance:
            runnable = {activation.step for activation in engine.runnable(base)}
            relevant = [result for result in results if result.step in runnable]
            if not relevant:
                return base
            now = self.clock()
            applied = self._reach_ends(engine.apply(base, relevant, now=now), now)
            return with_lease(applied, owner, now, self.lease)

        return self._put_or_update(apply(instance), storage, apply)

    def _reach_ends(self, instance: Instance, now: datetime) -> Instance:
        activations = engine.runnable(instance)
        if not activations or not all(
            item.step.terminal and item.step.execute is Done.execute for item in activations
        ):
            return instance
        return engine.apply(instance, [self._execute(instance, a) for a in activations], now=now)

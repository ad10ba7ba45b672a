"""`baton check-resume`'s verdict: a stopped-and-resumed run against the uninterrupted one.

Both runs recorded every update (`resume_record`): the data position it started from, a digest
of its batch, its losses and learning rates, and digests of the solver's state after it,
registered or not. The comparison finds, per part, the first update where the runs differ, and
diagnoses the first difference of all by what differs first at that update, in the order that
separates causes:

1. the data position: the stream was not put back;
2. the batch at the same position: the dataset's items are not a function of (seed, epoch,
   index) (the probes of `resume_probe` say how);
3. state no checkpoint holds (an unregistered module, scheduler, optimizer or tensor): named;
4. the learning rate: a schedule outside the checkpoint;
5. registered state or the loss, with the same batch: something else outside the checkpoint.

Then the final states (weights, optimizers and schedulers, EMA, best state, history) are
compared part by part.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The verdict table's rows: per-update parts, then the final state's parts.
UPDATE_PARTS = ("data order", "batches", "losses", "learning rates", "state after each update", "unregistered state")
FINAL_PARTS = {"weights": "weights", "optimizers": "optimizers & schedulers", "ema": "EMA",
               "best": "best state", "history": "history"}
_FIELDS = {"data order": "position", "batches": "batch", "losses": "losses", "learning rates": "lr",
           "state after each update": "state", "unregistered state": "unregistered"}


@dataclass
class Verdict:
    """One stopped-and-resumed run against the uninterrupted one.

    Attributes:
        name: how it was stopped ("SIGTERM at update 6").
        rows: table row -> None when exact, else where it first differs.
        first_update: the first update where anything differs (None: only the end differs, or nothing).
        diagnosis: what differs first and why, in words; fix: what to change, in one line.
    """

    name: str
    rows: dict[str, str | None] = field(default_factory=dict)
    first_update: int | None = None
    diagnosis: str | None = None
    fix: str | None = None

    @property
    def exact(self) -> bool:
        return self.diagnosis is None


def _first_key(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    for key in [*a, *(k for k in b if k not in a)]:
        if a.get(key, "<missing>") != b.get(key, "<missing>"):
            return key
    return None


def _differs(part: str, ref: Mapping[str, Any], got: Mapping[str, Any]) -> str | None:
    """Where one part of two records differs, in a few words (None: equal)."""
    name = _FIELDS[part]
    a, b = ref.get(name), got.get(name)
    if a == b:
        return None
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return _first_key(a, b)
    return f"{a} vs {b}" if part == "data order" else ""


def compare_updates(name: str, reference: dict[int, dict[str, Any]], resumed: dict[int, dict[str, Any]],
                    probe: Mapping[str, Any] | None) -> Verdict:
    """The per-update rows and the diagnosis of the first difference."""
    verdict = Verdict(name)
    first: dict[str, tuple[int, str]] = {}
    for update in sorted(reference):
        if update not in resumed:
            verdict.first_update = verdict.first_update or update
            verdict.diagnosis = f"the resumed run never reached update {update}"
            verdict.fix = "see the resumed run's log (--keep keeps it)"
            break
        for part in UPDATE_PARTS:
            if part not in first and (where := _differs(part, reference[update], resumed[update])) is not None:
                first[part] = (update, where)
    for part in UPDATE_PARTS:
        if part in first:
            update, where = first[part]
            verdict.rows[part] = f"update {update}" + (f": {where}" if where else "")
        else:
            verdict.rows[part] = None
    if first and verdict.diagnosis is None:
        update = min(u for u, _ in first.values())
        verdict.first_update = update
        at = {part: where for part, (u, where) in first.items() if u == update}
        verdict.diagnosis, verdict.fix = diagnose(update, at, reference[update], resumed[update], probe)
    return verdict


def diagnose(update: int, at: Mapping[str, str], ref: Mapping[str, Any], got: Mapping[str, Any],
             probe: Mapping[str, Any] | None) -> tuple[str, str]:
    """(what diverged and why, the fix) for the parts that differ first, at `update`."""
    if "data order" in at:
        return (f"the data position at update {update} differs ({at['data order']}, as [data epoch, batch]): "
                "the training stream was not put back where the checkpoint says",
                "draw training batches only through the engine (run_updates / the training stream)")
    if "batches" in at:
        return data_diagnosis(update, probe)
    if "unregistered state" in at:
        path = at["unregistered state"]
        attribute = path.split(".", 1)[0]
        kind = got.get("classes", {}).get(attribute) or ref.get("classes", {}).get(attribute, "?")
        what = f"its '{path.split('.', 1)[1]}'" if "." in path else "its value"
        if "Scheduler" in kind or kind.endswith("LR"):
            fix = (f"pass it to make_stepper(optimizer, self.{attribute}, ...), which steps and checkpoints it, "
                   f"or register_stateful('{attribute}')")
        else:
            fix = f"register_stateful('{attribute}') in build_model, so checkpoints hold it"
        lr = f"; the learning rate differs too ({_lr_change(ref, got)})" if "learning rates" in at else ""
        return (f"self.{attribute} ({kind}) is not registered, and {what} after update {update} differs "
                f"from the uninterrupted run's: a checkpoint does not hold it, so the resume restarted it{lr}", fix)
    if "learning rates" in at:
        return (f"the learning rate after update {update} differs ({_lr_change(ref, got)}): a schedule moves it "
                "from state that no checkpoint holds",
                "give the LR scheduler to make_stepper(optimizer, scheduler, ...), or register_stateful it")
    if "state after each update" in at:
        return (f"'{at['state after each update']}' differs after update {update}, with the same batch: something "
                "not in the checkpoint (a Python attribute, a counter, a generator of its own) shapes training",
                "register_stateful what run_step reads and changes, or derive it from self.update_count")
    return (f"the loss of update {update} differs, with the same batch and state: the forward reads something "
            "not in the checkpoint (a Python attribute, a generator of its own)",
            "register_stateful it, or draw randomness from the global torch generator, which checkpoints restore")


def _lr_change(ref: Mapping[str, Any], got: Mapping[str, Any]) -> str:
    key = _first_key(ref.get("lr", {}), got.get("lr", {}))
    if key is None:
        return "?"
    return f"'{key}': {ref['lr'].get(key)} in the uninterrupted run, {got['lr'].get(key)} after the resume"


def data_diagnosis(update: int | None, probe: Mapping[str, Any] | None) -> tuple[str, str]:
    """Why the training data is not a function of (seed, epoch, index), from the probes."""
    where = f"the batch at update {update} differs from the uninterrupted run's at the same data position"
    if update is None:
        where = "the runs agree at these stops, but not by design"
    if probe and probe.get("global_rng"):
        if update is None:
            where += (" (with dataset.num_workers=0 the draws stay in the main process, whose RNG a checkpoint "
                      "restores; with workers they would not)")
        return (f"{where}: the dataset's randomness does not come from (seed, epoch, item): an item fetched twice "
                "differs when the global RNG (random, numpy or torch) differs",
                "draw per-item randomness from baton.data.rng.sample_generator(seed, epoch, index), "
                "never from random / numpy.random / torch's global generator in __getitem__")
    if probe and probe.get("set_epoch"):
        name = probe["set_epoch"]
        return (f"{where}: {name}.set_epoch does not take the epoch it is given (set_epoch(e) twice serves "
                "other items than once), so its items depend on how often the epoch was set in this process",
                f"in {name}.set_epoch, store the epoch it is given (self.epoch = epoch) and pass it on to the "
                "dataset it wraps")
    return (f"{where}: the dataset's items (or the sampler's order) depend on what this process did before, "
            "not only on (seed, epoch, item): a cache filled on first use, a counter of its own",
            "make each item a function of (seed, epoch, index) (baton.data.rng.sample_generator); "
            "fill caches with what does not change between epochs only")


def compare_final(verdict: Verdict, reference: Mapping[str, Any], resumed: Mapping[str, Any]) -> None:
    """The final state's rows; a difference there with none before is diagnosed by part."""
    for part, row in FINAL_PARTS.items():
        key = _first_key(reference[part], resumed[part])
        verdict.rows[row] = None if key is None else f"at the end: {key}"
        if key is not None and verdict.diagnosis is None:
            verdict.diagnosis = (f"the {row} at the end differ ('{key}') although every update matched: state "
                                 "changed outside the train updates (valid, evaluate, should_stop) is not restored")
            verdict.fix = "register_stateful what the other stages change, or keep them from changing training state"

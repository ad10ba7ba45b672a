"""A learning-rate sweep of __NAME__: `baton grid __NAME__` (-j 2: two XPs at a time)."""

from baton.xp.explore import Launcher, explorer


@explorer(metrics=["train.loss", "valid.loss", "evaluate.si_snr"])
def explore(launcher: Launcher) -> None:
    launcher.bind_(solver="__NAME__")  # every XP below gets this
    for lr in [1e-3, 3e-3]:
        launcher(optim={"lr": lr})  # one XP per call
